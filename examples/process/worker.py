# A dsat "process" worker: dsat keeps it running and writes one JSON
# request per line on stdin; it answers each with one JSON line on stdout.
# stdout is for answers only: log to stderr (it goes to dsat's log).
import json
import sys


def handle(payload, settings):
    text = payload.get("text") if isinstance(payload, dict) else None
    if not isinstance(text, str):
        raise ValueError('the payload needs a "text" string')
    return {"text": text.upper() + settings.get("suffix", "")}


for line in sys.stdin:  # ends when dsat closes stdin: exit then
    req = json.loads(line)
    try:
        answer = {"id": req["id"], "output": handle(req["payload"], req["settings"])}
    except ValueError as e:  # bad input: a retry cannot help
        answer = {"id": req["id"], "error": str(e), "retry": False}
    except Exception as e:  # anything else: the token is retried
        answer = {"id": req["id"], "error": repr(e)}
    print(json.dumps(answer), flush=True)
