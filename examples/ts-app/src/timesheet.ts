// A timesheet: tasks with the time spent on them ("review:45m", "build:1.5h"),
// added up per task and in total.
import ms from "ms";

export interface Entry {
  task: string;
  millis: number;
}

export interface Line {
  task: string;
  millis: number;
  /** The duration in words, e.g. "2 hours". */
  spent: string;
  /** This task's share of the total, in whole percent. */
  percent: number;
}

/** Parses "TASK:DURATION" (DURATION as ms reads it: "90m", "1.5h", "2 days"). */
export function parseEntry(text: string): Entry {
  const colon = text.lastIndexOf(":");
  if (colon <= 0) throw new Error(`"${text}": expected TASK:DURATION, e.g. review:45m`);
  const task = text.slice(0, colon).trim();
  const millis = ms(text.slice(colon + 1).trim());
  if (millis === undefined || Number.isNaN(millis) || millis < 0) {
    throw new Error(`"${text}": "${text.slice(colon + 1)}" is not a duration (try 45m, 1.5h, 2d)`);
  }
  return { task, millis };
}

/** Hours and minutes, "3:05". */
export function hoursMinutes(millis: number): string {
  const minutes = Math.round(millis / 60_000);
  return `${Math.floor(minutes / 60)}:${String(minutes % 60).padStart(2, "0")}`;
}

/** One line per task (entries of the same task added up), longest first. */
export function summarize(entries: Entry[]): { lines: Line[]; totalMillis: number } {
  const byTask = new Map<string, number>();
  for (const { task, millis } of entries) byTask.set(task, (byTask.get(task) ?? 0) + millis);
  const totalMillis = [...byTask.values()].reduce((a, b) => a + b, 0);
  const lines = [...byTask]
    .map(([task, millis]) => ({
      task,
      millis,
      spent: ms(millis, { long: true }),
      percent: totalMillis === 0 ? 0 : Math.round((100 * millis) / totalMillis),
    }))
    .sort((a, b) => b.millis - a.millis || a.task.localeCompare(b.task));
  return { lines, totalMillis };
}
