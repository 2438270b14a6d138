#!/usr/bin/env node
// timesheet [TASK:DURATION...]: adds up the time spent per task. Without
// arguments, a sample day.
import { hoursMinutes, parseEntry, summarize } from "./timesheet";

// The one piece of Node's API used here, declared rather than pulling in
// @types/node (a few MB) for it.
declare const process: { argv: string[]; exitCode?: number };

const sample = ["design:45m", "code:2.5h", "review:30m", "code:1h", "build:15m"];

function main(args: string[]): number {
  let entries;
  try {
    entries = (args.length > 0 ? args : sample).map(parseEntry);
  } catch (error) {
    console.error(`timesheet: ${(error as Error).message}`);
    return 2;
  }
  const { lines, totalMillis } = summarize(entries);
  const width = Math.max(5, ...lines.map((line) => line.task.length));
  for (const line of lines) {
    console.log(
      `${line.task.padEnd(width)}  ${hoursMinutes(line.millis).padStart(6)}  ` +
        `${String(line.percent).padStart(3)}%  ${line.spent}`,
    );
  }
  console.log(`${"total".padEnd(width)}  ${hoursMinutes(totalMillis).padStart(6)}`);
  return 0;
}

process.exitCode = main(process.argv.slice(2));
