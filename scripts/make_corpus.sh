#!/bin/sh
# Writes the default corpus, the King James Bible (Debian package bible-kjv), to
# data/kjv.txt under the repository root (or to the path given as $1), once: an
# existing non-empty file is left alone. One verse a line, each line starting with
# its reference ("Ge1:1 In the beginning ..."), 31102 lines, about 4.4 MB.
# lua/blt/data.lua runs it when data.default_corpus() finds the file missing.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-"$root/data/kjv.txt"}
[ -s "$out" ] && exit 0
if ! command -v bible >/dev/null 2>&1; then
    echo "make_corpus.sh: the 'bible' program (Debian package bible-kjv) is not installed: run 'make deps'" >&2
    exit 1
fi
mkdir -p "$(dirname "$out")"
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT INT TERM
# -f turns pretty-printing off: one verse a line with its reference, no line
# breaking, no pager. stdin from /dev/null so it never waits for commands.
if ! bible -f 'Gen1:1-Rev22:21' </dev/null >"$tmp"; then
    echo "make_corpus.sh: 'bible -f Gen1:1-Rev22:21' failed" >&2
    exit 1
fi
lines=$(wc -l <"$tmp")
last=$(tail -n 1 "$tmp")
case "$last" in
Rev22:21*) ;;
*) echo "make_corpus.sh: incomplete output from bible (last line: '$last')" >&2; exit 1 ;;
esac
if [ "$lines" -ne 31102 ]; then
    echo "make_corpus.sh: expected 31102 verses from bible, got $lines" >&2
    exit 1
fi
mv "$tmp" "$out"
trap - EXIT INT TERM
echo "make_corpus.sh: wrote $out ($(wc -c <"$out") bytes)" >&2
