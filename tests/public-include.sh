#!/bin/sh
# public-include.sh BUILDDIR TARGET... - the line between rx's public and
# private headers, as the build draws it (meson.build, rx_dep and
# rx_internal_dep). Each TARGET is built from tests/public-include.c with a
# public dependency; its compile command, taken from the build's
# compile_commands.json with the source and outputs swapped, compiles:
#   1. <rx.h> and "rx.h", which must compile: the public headers (include/,
#      and build/include/'s generated rx_version.h) are reachable;
#   2. "internal.h" and <internal.h>, and reactor/'s other headers (list.h,
#      mpsc.h, timerwheel.h), each of which must fail, not found: nothing
#      built with the public dependency (examples, benchmarks, programs
#      linking rx) reaches the rx__ internals.
# So adding reactor/ to the public dependency fails here. Prints
# "public-include: OK" or what went wrong, with the compiler's output.
set -eu

if [ $# -lt 2 ]; then
  echo "usage: $0 BUILDDIR TARGET..." >&2
  exit 2
fi
build=$(cd "$1" && pwd)
shift
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rx-public-include.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

fail() {
  echo "public-include: FAIL: $*" >&2
  exit 1
}

[ -f "$build/compile_commands.json" ] ||
  fail "$build/compile_commands.json is missing (meson writes it)"

# Probes: one file per #include, written where no rx header is, so that a
# quoted include finds only what the -I flags give it.
printf '#include <rx.h>\nint main(void) { return (int)rx_version() < 0; }\n' \
  >"$tmp/ok-angle.c"
printf '#include "rx.h"\nint main(void) { return (int)rx_version() < 0; }\n' \
  >"$tmp/ok-quote.c"
printf '#include "internal.h"\nint main(void) { return 0; }\n' \
  >"$tmp/bad-internal-quote.c"
printf '#include <internal.h>\nint main(void) { return 0; }\n' \
  >"$tmp/bad-internal-angle.c"
for h in list.h mpsc.h timerwheel.h; do
  printf '#include "%s"\nint main(void) { return 0; }\n' "$h" \
    >"$tmp/bad-$h.c"
done

# run TARGET PROBE: TARGET's compile command on PROBE, in its directory;
# the compiler's output in $tmp/out.
run() {
  (
    cd "$(cat "$tmp/$1.dir")"
    probe=$2
    args=$tmp/$1.args
    set --
    while IFS= read -r a; do set -- "$@" "$a"; done <"$args"
    exec "$@" -fdiagnostics-color=never -c "$probe" -o "$tmp/probe.o"
  ) >"$tmp/out" 2>&1
}

for target in "$@"; do
  # The target's compile command, as arguments one per line, less the
  # source, -c, -o and the dependency-file options; and the directory it
  # runs in. meson's compile_commands.json names the object file as
  # TARGET.p/....o under the target's build subdirectory.
  python3 - "$build/compile_commands.json" "$target" "$tmp/$target" <<'PY'
import json, shlex, sys
path, target, out = sys.argv[1:]
entries = [e for e in json.load(open(path))
           if ("/" + e.get("output", "")).find("/" + target + ".p/") >= 0]
if len(entries) != 1:
    sys.exit("public-include: %d compile commands for target %s"
             % (len(entries), target))
e = entries[0]
args = e["arguments"] if "arguments" in e else shlex.split(e["command"])
keep, skip = [], False
for a in args:
    if skip:
        skip = False
    elif a in ("-o", "-MQ", "-MF", "-MT"):
        skip = True
    elif a in ("-c", "-MD", "-MMD") or a == e["file"]:
        pass
    else:
        keep.append(a)
with open(out + ".dir", "w") as f:
    f.write(e["directory"] + "\n")
with open(out + ".args", "w") as f:
    f.write("\n".join(keep) + "\n")
PY
  for probe in "$tmp"/ok-*.c; do
    run "$target" "$probe" || {
      cat "$tmp/out" >&2
      fail "$target: $(head -n 1 "$probe") does not compile"
    }
  done
  n=0
  for probe in "$tmp"/bad-*.c; do
    if run "$target" "$probe"; then
      fail "$target: $(head -n 1 "$probe") compiles: the public" \
        "dependency reaches reactor/"
    fi
    grep -qiE 'no such file|not found' "$tmp/out" || {
      cat "$tmp/out" >&2
      fail "$target: $(head -n 1 "$probe") failed, but not as not found"
    }
    n=$((n + 1))
  done
  echo "public-include: $target: rx.h compiles, $n private includes refused"
done
echo "public-include: OK"
