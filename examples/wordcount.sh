#!/bin/sh
# Reads {"text": "..."} on stdin and prints {"words": N, "long_words": M}:
# words of at least $MIN_LENGTH letters. Plain POSIX sh, sed and awk.
set -eu
text=$(sed -n 's/.*"text"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
printf '%s\n' "$text" | awk -v min="${MIN_LENGTH:-1}" '
  { for (i = 1; i <= NF; i++) { words++; if (length($i) >= min) long++ } }
  END { printf "{\"words\": %d, \"long_words\": %d}\n", words, long }'
