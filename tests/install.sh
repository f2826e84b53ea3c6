#!/bin/sh
# install.sh SRCDIR VERSION - README.md's "Installing" section, as a user
# follows it, into a scratch directory:
#   1. its first ```sh block (meson setup, meson install) from the top of
#      the tree, with `prefix` and the build directory moved into the scratch
#      directory: a library-only build that must not look for cmocka, C++,
#      google-benchmark, libev, libuv or libevent;
#   2. the install layout that section lists (the public headers: rx.h,
#      rx_version.h and rx/*.h, and none of reactor/'s), rx.pc's version
#      (VERSION, meson's project version) and its --cflags;
#   3. its other ```sh blocks in order, in a directory holding the README's
#      example.c (the ```c block that starts with "/* example.c"): built
#      with pkg-config and a run path, then with LD_LIBRARY_PATH, then
#      statically; each example is run on "hello\n" and must print
#      "read 6 bytes", and the shared ones must load the installed
#      librx.so.MAJOR (its soname, from VERSION).
# A README that no longer builds, runs or installs what it says fails here.
# The scratch directory is removed at exit. Prints "install: OK" or the step
# that failed, with its output.
set -eu

if [ $# -ne 2 ]; then
  echo "usage: $0 SRCDIR VERSION" >&2
  exit 2
fi
src=$(cd "$1" && pwd)
version=$2
# meson names the shared library's soname after the version's major part.
soname=librx.so.${version%%.*}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rx-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
work=$tmp/work
mkdir "$work"

fail() {
  echo "install: FAIL: $*" >&2
  exit 1
}

# The README's sh blocks of "## Installing" as block1.sh, block2.sh...
awk -v dir="$tmp" '
  /^## / { insec = ($0 == "## Installing"); next }
  !insec { next }
  /^```sh$/ { n++; out = dir "/block" n ".sh"; inb = 1; next }
  inb && /^```$/ { inb = 0; close(out); next }
  inb { print > out }
' "$src/README.md"
for n in 1 2 3 4; do
  [ -s "$tmp/block$n.sh" ] ||
    fail "README.md's Installing section has no sh block $n"
done
grep -q '^prefix=' "$tmp/block1.sh" ||
  fail "README.md's first Installing block does not set prefix"

# The example program.
awk '
  keep && /^```$/ { exit }
  keep { print; next }
  /^```c$/ { start = NR + 1; next }
  NR == start && /^\/\* example\.c:/ { keep = 1; print }
' "$src/README.md" >"$work/example.c"
[ -s "$work/example.c" ] || fail "README.md has no example.c block"

# 1. Configure, build and install, as the README says. PKG_CONFIG_PATH is
# the README's to set, not the caller's.
unset PKG_CONFIG_PATH LD_LIBRARY_PATH
sed -e "s|^prefix=.*|prefix='$prefix'|" \
  -e "s|build-install|'$tmp/build-install'|g" "$tmp/block1.sh" \
  >"$tmp/install.sh"
echo "install: README's install steps, prefix $prefix"
(cd "$src" && sh -eu "$tmp/install.sh") >"$tmp/install.log" 2>&1 || {
  cat "$tmp/install.log" >&2
  fail "the README's install steps"
}
log=$tmp/build-install/meson-logs/meson-log.txt
if grep -E "C\+\+ compiler|dependency '?(cmocka|benchmark|libuv|libevent)|Library ev " \
  "$log" >"$tmp/extra" 2>&1; then
  cat "$tmp/extra" >&2
  fail "the library-only build looked for what only tests or benchmarks need"
fi

# 2. The layout the README lists, and the version.
for f in include/rx.h include/rx_version.h include/rx/layout.h \
  lib/librx.so lib/$soname lib/librx.a lib/pkgconfig/rx.pc \
  share/doc/rx/guide.md share/doc/rx/libev.md share/man/man3/rx.3; do
  [ -e "$prefix/$f" ] || fail "$prefix/$f is not installed"
done
ls "$prefix"/include/rx/*.h >/dev/null 2>&1 ||
  fail "no header is installed in $prefix/include/rx/"
for f in internal.h list.h mpsc.h timerwheel.h rx.map; do
  if find "$prefix" -name "$f" | grep -q .; then
    fail "reactor/'s private $f is installed"
  fi
done
got=$(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --modversion rx) ||
  fail "pkg-config does not find the installed rx.pc"
cflags=$(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags rx) ||
  fail "pkg-config --cflags rx fails"
case " $cflags " in
*" -I$prefix/include "*) ;;
*) fail "pkg-config --cflags rx is \"$cflags\", without -I$prefix/include" ;;
esac
[ "$got" = "$version" ] || fail "rx.pc says version $got, meson.build $version"
grep -qxF "#define RX_VERSION_STRING \"$version\"" \
  "$prefix/include/rx_version.h" ||
  fail "the installed rx_version.h is not version $version"

# 3. Each build of the example, then its run. The blocks run in one shell,
# as a user types them (block 2 exports PKG_CONFIG_PATH for the others).
cat >"$tmp/examples.sh" <<EOF
set -eu
prefix='$prefix'
cd '$work'
. '$tmp/block2.sh' >'$tmp/out-rpath' 2>&1
ldd ./example >'$tmp/ldd-rpath'
. '$tmp/block3.sh' >'$tmp/out-ld' 2>&1
LD_LIBRARY_PATH=\$(pkg-config --variable=libdir rx) ldd ./example \
  >'$tmp/ldd-ld'
. '$tmp/block4.sh' >'$tmp/out-static' 2>&1
(echo hello) | ./example >>'$tmp/out-static' 2>&1
ldd ./example >'$tmp/ldd-static'
EOF
sh -eu "$tmp/examples.sh" >"$tmp/examples.log" 2>&1 || {
  cat "$tmp/examples.log" "$tmp"/out-* >&2 2>/dev/null || true
  fail "the README's example steps"
}
for how in rpath ld static; do
  grep -qx "read 6 bytes" "$tmp/out-$how" || {
    cat "$tmp/out-$how" >&2
    fail "the example built with $how did not print \"read 6 bytes\""
  }
done
for how in rpath ld; do
  grep -qF "$soname => $prefix/lib/$soname " "$tmp/ldd-$how" || {
    cat "$tmp/ldd-$how" >&2
    fail "the example built with $how does not load $prefix/lib/$soname"
  }
done
if grep -q "librx" "$tmp/ldd-static"; then
  fail "the statically linked example loads a shared librx"
fi

echo "install: OK: installed into a scratch prefix; the README's example" \
  "built with pkg-config runs (run path, LD_LIBRARY_PATH, static)"
