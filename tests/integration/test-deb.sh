#!/usr/bin/env bash
# test-deb: make deb builds build/libtraceagent_<version>_<arch>.deb; its fields, dependencies and files; lintian finds no error; dpkg -i, the installed traceagent (--check, a traced curl), then dpkg -r leaves nothing behind.
#
# It installs the package into this machine (root, as make check runs here)
# and removes it again, also when a check fails; a libtraceagent package
# installed before the test is removed first.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

PKG=libtraceagent
# The agent's own version (what it reports as telemetry.sdk.version) names the package.
VERSION=$(sed -n 's/^#define AGENT_VERSION "\(.*\)"$/\1/p' agent/resource.h)
ARCH=$(dpkg --print-architecture)
MA=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null)
DEB=build/${PKG}_${VERSION}_${ARCH}.deb
LIB=/usr/lib/$MA/libtraceagent.so
[[ -n $VERSION && -n $MA ]] || die "AGENT_VERSION or the multiarch triplet not found"

# Removes the package if dpkg knows it in any state (idempotence, cleanup).
remove_pkg() {
	if dpkg-query -W -f='${db:Status-Status}' "$PKG" 2>/dev/null | grep -qv '^not-installed$'; then
		dpkg --purge "$PKG" >/dev/null 2>&1
	fi
}
remove_pkg || die "a $PKG package installed before the test could not be removed"
at_exit remove_pkg

echo "== make deb"
# make check built it already; then this only confirms it is up to date.
make -s --no-print-directory deb >"$WORK/deb.log" 2>&1 || { sed 's/^/    | /' "$WORK/deb.log"; die "make deb failed"; }
check "make deb made $DEB" test -f "$DEB"

echo "== dpkg-deb --info"
dpkg-deb --info "$DEB" >"$WORK/info" || die "dpkg-deb --info failed"
sed 's/^/    | /' "$WORK/info"
# field NAME: its value in the control file as dpkg-deb --info shows it (first line).
field() { sed -n "s/^ $1: //p" "$WORK/info" | head -n1; }
expect "Package" "$PKG" "$(field Package)"
expect "Version: the agent's AGENT_VERSION" "$VERSION" "$(field Version)"
expect "Architecture: dpkg's" "$ARCH" "$(field Architecture)"
expect "Section" utils "$(field Section)"
expect "Priority" optional "$(field Priority)"
check "Maintainer: a name and an address" grep -Eq '^ Maintainer: [^<]+ <[^@ ]+@[^> ]+>$' "$WORK/info"
check "Installed-Size computed" grep -Eq '^ Installed-Size: [1-9][0-9]*$' "$WORK/info"
check "Description: a synopsis and an extended description" \
	grep -Eq '^ Description: .{10,79}$' "$WORK/info"
check "the extended description names the optional libraries" grep -q 'Capstone for tracing named' "$WORK/info"
depends=$(field Depends)
check "Depends: libc6, versioned (dpkg-shlibdeps), and zlib1g (gzip, dlopen'ed)" \
	grep -Eq '^libc6 \(>= [0-9][0-9.]*\), zlib1g$' <<<"$depends"
# The libc6 version must cover every glibc symbol version the agent uses.
libc_min=$(sed -n 's/^libc6 (>= \([0-9.]*\)).*/\1/p' <<<"$depends")
glibc_max=$(objdump -T build/libtraceagent.so | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)
check "libc6 (>= $libc_min) covers the newest glibc symbol version used (GLIBC_$glibc_max)" \
	dpkg --compare-versions "${libc_min:-0}" ge "$glibc_max"
expect "the agent's SONAME is its file name" libtraceagent.so \
	"$(readelf -d build/libtraceagent.so | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
check "an ldconfig trigger (a shared object in a library directory)" \
	bash -c "dpkg-deb --info '$DEB' triggers | grep -qx 'activate-noawait ldconfig'"
check "the agent links libc only (other libraries are dlopen'ed)" \
	test "$(readelf -d build/libtraceagent.so | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')" = libc.so.6
check "no dependency on libcurl (the agent never loads it)" bash -c "! grep -qi libcurl '$WORK/info'"
expect "Recommends: OpenSSL (https endpoints)" "libssl3 | libssl1.1" "$(field Recommends)"
expect "Suggests: Capstone (TRACEAGENT_FUNCTIONS), curl (--check's probe)" "libcapstone4, curl" "$(field Suggests)"

echo "== dpkg-deb --contents"
dpkg-deb --contents "$DEB" >"$WORK/contents" || die "dpkg-deb --contents failed"
# Paths without the leading "./", files only.
awk '$1 !~ /^d/ { sub(/^\.\//, "", $6); print $6 }' "$WORK/contents" | LC_ALL=C sort >"$WORK/files"
DOC=usr/share/doc/$PKG
{
	printf '%s\n' usr/bin/traceagent "${LIB#/}" "$DOC/README.md" "$DOC/changelog.gz" "$DOC/copyright" \
		usr/share/man/man1/traceagent.1.gz
	for f in docs/*.md docs/*.svg; do if [[ -e $f ]]; then echo "$DOC/$f"; fi; done
} | LC_ALL=C sort >"$WORK/expected"
expect "exactly the expected files" "$(tr '\n' ' ' <"$WORK/expected")" "$(tr '\n' ' ' <"$WORK/files")"
expect "everything owned by root/root" "" "$(awk '$2 != "root/root"' "$WORK/contents")"
expect "directories 0755" "" "$(awk '$1 ~ /^d/ && $1 != "drwxr-xr-x"' "$WORK/contents")"
expect "the launcher 0755, other files 0644" "" "$(awk '$1 !~ /^d/ && !(($6 == "./usr/bin/traceagent") ? $1 == "-rwxr-xr-x" : $1 == "-rw-r--r--")' "$WORK/contents")"
X=$WORK/x
dpkg-deb --extract "$DEB" "$X"
check "the packaged agent has no symbol table (stripped), its dynamic symbols kept" \
	bash -c "! readelf -S '$X$LIB' | grep -q '\.symtab' && readelf --dyn-syms '$X$LIB' | grep -q ' dlopen$'"
check "the launcher knows LIBDIR=/usr/lib/$MA" grep -qF "\"$LIB\"" "$X/usr/bin/traceagent"
check "the copyright file is machine-readable, Apache-2.0" \
	grep -q '^Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/' "$X/$DOC/copyright"
check "LICENSE is the Apache-2.0 text the copyright file points to" cmp -s LICENSE /usr/share/common-licenses/Apache-2.0
check "the changelog's entry is this version" bash -c "zcat '$X/$DOC/changelog.gz' | head -n1 | grep -qF '$PKG ($VERSION)'"
# Every option the launcher's usage lists is in its manual page.
opts=$(bash "$X/usr/bin/traceagent" --help | grep -oE -- '--[a-z]+' | LC_ALL=C sort -u)
man=$(zcat "$X/usr/share/man/man1/traceagent.1.gz" | sed 's/\\-/-/g')
missing=
for o in $opts; do grep -q -- "$o" <<<"$man" || missing+="$o "; done
expect "the manual page documents every option of --help ($(tr '\n' ' ' <<<"$opts"| sed 's/ $//'))" "" "$missing"

echo "== lintian"
lintian --fail-on error "$DEB" >"$WORK/lintian.out" 2>"$WORK/lintian.err" && rc=0 || rc=$?
sed 's/^/    | /' "$WORK/lintian.out"
expect "lintian: no error (exit status 0)" 0 "$rc"
expect "lintian: no E: line" "" "$(grep '^E:' "$WORK/lintian.out" || true)"
expect "lintian: nothing overridden" "" "$(grep '^O:' "$WORK/lintian.out" || true)"

echo "== dpkg -i"
dpkg -i "$DEB" >"$WORK/dpkg-i.log" 2>&1 && rc=0 || rc=$?
expect "dpkg -i: status 0" 0 "$rc"
((rc == 0)) || sed 's/^/    | /' "$WORK/dpkg-i.log"
expect "dpkg says installed" "install ok installed" "$(dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null)"
expect "dpkg -L lists the package's files" "$(sed 's|^|/|' "$WORK/files" | tr '\n' ' ')" \
	"$(dpkg -L "$PKG" | while read -r p; do [[ -d $p ]] || echo "$p"; done | LC_ALL=C sort | tr '\n' ' ')"
expect "dpkg --verify: the installed files match the md5sums" "" "$(dpkg --verify "$PKG" 2>&1)"
check "ld.so finds the agent by name (it is in the multiarch directory)" \
	grep -qF "$LIB" <<<"$(LD_PRELOAD=libtraceagent.so OTEL_SDK_DISABLED=true cat /proc/self/maps)"

start_sink
start_recorder
BASE=http://127.0.0.1:$REC_PORT

echo "== the installed traceagent --check"
rc=0
env -u LD_PRELOAD /usr/bin/traceagent --check --endpoint "$SINK_ENDPOINT" curl >"$WORK/check.out" 2>&1 || rc=$?
sed 's/^/    | /' "$WORK/check.out"
expect "--check: status 0" 0 "$rc"
check "--check: the agent found is the installed one" grep -qxF "agent: $LIB" "$WORK/check.out"
check "--check: the endpoint answers" grep -q 'endpoint answers: HTTP 200' "$WORK/check.out"
check "--check: curl's HTTP hooks active" grep -q 'HTTP/1.x over libc sockets (server and client spans): active' "$WORK/check.out"

echo "== a curl traced by the installed files"
out=$(env -u LD_PRELOAD /usr/bin/traceagent --service deb-launcher --endpoint "$SINK_ENDPOINT" -- \
	env OTEL_BSP_SCHEDULE_DELAY=100 curl -sS --max-time 10 "$BASE/deb?via=launcher") || true
expect "curl through /usr/bin/traceagent answered" ok "$out"
out=$(env LD_PRELOAD=libtraceagent.so OTEL_SERVICE_NAME=deb-by-name OTEL_EXPORTER_OTLP_ENDPOINT="$SINK_ENDPOINT" \
	OTEL_BSP_SCHEDULE_DELAY=100 curl -sS --max-time 10 "$BASE/deb?via=name") || true
expect "curl with LD_PRELOAD=libtraceagent.so answered" ok "$out"
for via in launcher by-name; do
	check "$via: curl's CLIENT span reached the sink" wait_spans "$SINK_JSONL" 1 \
		"s.get('service.name') == 'deb-$via' and s.get('kind') == 'CLIENT' and a.get('url.full', '').startswith('$BASE/deb?via=')" 15
done
expect "the spans' telemetry.sdk.version is the package's version" "$VERSION $VERSION" \
	"$(spans "$SINK_JSONL" "s.get('service.name', '').startswith('deb-')" |
		"$PY" -c 'import json,sys; print(" ".join(sorted(json.loads(l)["resource"].get("telemetry.sdk.version", "?") for l in sys.stdin)))')"
expect "both requests carried a traceparent" 2 "$(grep -c '"traceparent"' "$REC_LOG" || true)"

echo "== dpkg -r"
dpkg -r "$PKG" >"$WORK/dpkg-r.log" 2>&1 && rc=0 || rc=$?
expect "dpkg -r: status 0" 0 "$rc"
((rc == 0)) || sed 's/^/    | /' "$WORK/dpkg-r.log"
rc=0
dpkg -s "$PKG" >/dev/null 2>&1 || rc=$?
expect "dpkg -s: not installed" 1 "$rc"
left=
while read -r f; do [[ -e /$f || -L /$f ]] && left+="/$f "; done <"$WORK/files"
expect "none of the package's files is left" "" "$left"
check "its documentation directory is gone" test ! -e "/$DOC"

finish
