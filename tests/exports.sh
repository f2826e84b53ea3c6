#!/bin/sh
# exports.sh LIB MAP - the symbols the shared library LIB exports are
# exactly those that the version script MAP (reactor/rx.map) lists, each
# under its own version node, in both directions: a function made public
# (RX_EXPORT) but not listed in the map, a listed one that is gone, an rx__
# internal that leaks, or a symbol under the wrong node fails here. MAP must
# name every global symbol (no wildcard) and only rx_ names. Prints
# "exports: OK" or the differences.
set -eu

if [ $# -ne 2 ]; then
  echo "usage: $0 LIB MAP" >&2
  exit 2
fi
lib=$1
map=$2
command -v nm >/dev/null 2>&1 || {
  echo "exports: SKIP: no nm"
  exit 77
}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rx-exports.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

fail() {
  echo "exports: FAIL: $*" >&2
  exit 1
}

# What the library exports, as NAME@@NODE: every defined dynamic symbol but
# the version nodes themselves (type A).
nm -D --defined-only "$lib" >"$tmp/nm" || fail "nm -D $lib"
awk '$2 != "A" { print $3 }' "$tmp/nm" | sort >"$tmp/lib"

# What the map lists, as NAME@@NODE: comments removed, then the tokens of
# NODE { global: NAME; ... local: *; } [PARENT];
awk '
  { s = s $0 "\n" }
  END {
    while ((i = index(s, "/*")) > 0) {
      j = index(substr(s, i + 2), "*/")
      if (j == 0) { print "unterminated comment" > "/dev/stderr"; exit 1 }
      s = substr(s, 1, i - 1) " " substr(s, i + j + 3)
    }
    gsub(/[{};]/, " & ", s)
    n = split(s, tok, /[ \t\n]+/)
    # closed: between a node'"'"'s "}" and its ";", where the parent is named.
    node = ""; depth = 0; sect = ""; closed = 0
    for (k = 1; k <= n; k++) {
      t = tok[k]
      if (t == "") continue
      if (depth == 0) {
        if (t == "{") { depth = 1; sect = "" }
        else if (t == ";") closed = 0
        else if (!closed) node = t
        continue
      }
      if (t == "}") { depth = 0; closed = 1; continue }
      if (t == "global:" || t == "local:") { sect = t; continue }
      if (t == ";") continue
      if (sect == "global:") {
        if (t ~ /[*?\[]/) {
          print "wildcard " t " in " node > "/dev/stderr"; exit 1
        }
        if (t !~ /^rx_/ || t ~ /^rx__/) {
          print t " in " node " is not a public rx_ name" > "/dev/stderr"
          exit 1
        }
        print t "@@" node
      }
    }
  }
' "$map" >"$tmp/map.raw" || fail "$map does not parse as a version script"
sort "$tmp/map.raw" >"$tmp/map"

[ -s "$tmp/map" ] || fail "$map lists no symbol"
[ -s "$tmp/lib" ] || fail "$lib exports no symbol"
dup=$(sed 's/@@.*//' "$tmp/map" | uniq -d)
[ -z "$dup" ] || fail "listed more than once in $map:" $dup
comm -23 "$tmp/lib" "$tmp/map" >"$tmp/extra"
comm -13 "$tmp/lib" "$tmp/map" >"$tmp/missing"
if [ -s "$tmp/extra" ] || [ -s "$tmp/missing" ]; then
  [ ! -s "$tmp/extra" ] || {
    echo "exported by $lib but not listed in $map:" >&2
    sed 's/^/  /' "$tmp/extra" >&2
  }
  [ ! -s "$tmp/missing" ] || {
    echo "listed in $map but not exported by $lib:" >&2
    sed 's/^/  /' "$tmp/missing" >&2
  }
  fail "the exported symbols differ from $map"
fi
echo "exports: OK: $(wc -l <"$tmp/lib") symbols, as $map lists them"
