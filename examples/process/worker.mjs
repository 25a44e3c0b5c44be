// A dsat "process" worker in Node: dsat keeps it running and writes one
// JSON request per line on stdin; it answers each with one JSON line on
// stdout. stdout is for answers only: log to stderr (console.error).
import { createInterface } from "readline";

function handle(payload, settings) {
  if (!payload || typeof payload.text !== "string") {
    const e = new Error('the payload needs a "text" string');
    e.retry = false; // bad input: a retry cannot help
    throw e;
  }
  return { text: payload.text.toUpperCase() + (settings.suffix || "") };
}

// The input ends when dsat closes stdin, and so does the process.
createInterface({ input: process.stdin }).on("line", (line) => {
  const req = JSON.parse(line);
  let answer;
  try {
    answer = { id: req.id, output: handle(req.payload, req.settings) };
  } catch (e) {
    answer = { id: req.id, error: e.message, retry: e.retry !== false };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
});
