// Runs against the compiled output: `npm run build && npm test`.
const test = require("node:test");
const assert = require("node:assert");
const { hoursMinutes, parseEntry, summarize } = require("../dist/timesheet.js");

test("parseEntry reads TASK:DURATION", () => {
  assert.deepStrictEqual(parseEntry("review:45m"), { task: "review", millis: 45 * 60_000 });
  assert.deepStrictEqual(parseEntry("a:b:1.5h"), { task: "a:b", millis: 90 * 60_000 });
});

test("parseEntry refuses what is not a duration", () => {
  assert.throws(() => parseEntry("review"), /expected TASK:DURATION/);
  assert.throws(() => parseEntry("review:soon"), /not a duration/);
});

test("summarize adds up each task, longest first", () => {
  const { lines, totalMillis } = summarize(
    ["code:2h", "review:30m", "code:30m", "build:30m"].map(parseEntry),
  );
  assert.strictEqual(totalMillis, 3.5 * 3_600_000);
  assert.deepStrictEqual(
    lines.map((line) => [line.task, hoursMinutes(line.millis), line.percent, line.spent]),
    [
      ["code", "2:30", 71, "3 hours"],
      ["build", "0:30", 14, "30 minutes"],
      ["review", "0:30", 14, "30 minutes"],
    ],
  );
});
