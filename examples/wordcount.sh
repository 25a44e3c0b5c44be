#!/bin/sh
# Reads {"text": "..."} on stdin and prints {"words": N, "long_words": M}:
# words of at least $MIN_LENGTH characters. Needs jq (a real JSON parser:
# escaped quotes, \n and \u escapes in the text are read right); the
# Docker image installs it.
set -eu
command -v jq >/dev/null 2>&1 || { echo "wordcount.sh needs jq: install it (apt-get install jq, apk add jq)" >&2; exit 127; }
exec jq -c --argjson min "${MIN_LENGTH:-1}" '
  [(.text // "") | tostring | splits("\\s+") | select(length > 0)]
  | {words: length, long_words: (map(select(length >= $min)) | length)}'
