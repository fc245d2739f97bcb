#!/usr/bin/env bash
# test-docs: README.md and docs/ hold together: links and #anchors resolve, the first screen says how to trace a program, every docs/ page is linked, the data-flow picture parses.
#
# Checks, over README.md and every docs/*.md:
#   - every relative link ([text](path), [text](path#anchor), ![alt](path),
#     <img src=...>) names an existing file, and every #anchor names a heading
#     of the file it points into (GitHub's slugs: lowercase, spaces to '-',
#     punctuation other than '-' and '_' dropped; a repeated heading gets -1,
#     -2 ...); links inside code blocks and code spans are not links;
#   - README.md's first 40 lines (the first screen) hold `LD_PRELOAD=`,
#     `traceagent --check`, `make demo` and the CI command
#     `bash scripts/install-deps && make check`;
#   - every docs/*.md is linked from README.md, and opens with a title and a
#     one-line summary;
#   - every docs/*.svg is well-formed XML with an <svg> root, and README.md
#     shows a picture from docs/ with an alt text.
# DOCS_ROOT=DIR checks another checkout's files (to run it against an older tree).
# No agent and no network: it reads files.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

ROOT=${DOCS_ROOT:-$PWD}

# The link checks are one python3 program: it prints PASS/FAIL lines, which
# are counted here.
results=$("$PY" - "$ROOT" <<'EOF'
import os, re, sys, glob
import xml.etree.ElementTree as ET

root = sys.argv[1]
out = []
def ok(msg): out.append("PASS " + msg)
def bad(msg): out.append("FAIL " + msg)

def fenced_lines(text):
    """Each line, and whether it belongs to a fenced code block (its fences included)."""
    fenced, fence = False, ''
    for ln in text.split('\n'):
        m = re.match(r'^\s*(```+|~~~+)', ln)
        if m:
            if not fenced:
                fenced, fence = True, m.group(1)[0] * 3
            elif ln.strip().startswith(fence):
                fenced = False
            yield ln, True
            continue
        yield ln, fenced

def strip_code(text):
    """The text with fenced code blocks and code spans blanked (line count kept)."""
    return '\n'.join('' if code else re.sub(r'(`+)(.+?)\1', '', ln) for ln, code in fenced_lines(text))

def slug(heading):
    s = heading.strip().lower()
    s = re.sub(r'<[^>]+>', '', s)                       # inline HTML tags
    s = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', s)   # links keep their text
    s = s.replace('`', '').replace('*', '')
    s = re.sub(r'[^\w\- ]', '', s, flags=re.UNICODE)   # punctuation but - and _
    return s.replace(' ', '-')

anchors_cache = {}
def anchors(path):
    """The anchors GitHub makes for the headings of a Markdown file."""
    if path not in anchors_cache:
        seen, result = {}, set()
        for ln, code in fenced_lines(open(path, encoding='utf-8').read()):
            m = None if code else re.match(r'^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$', ln)
            if not m:
                continue
            s = slug(m.group(1))
            n = seen.get(s, 0)
            seen[s] = n + 1
            result.add(s if n == 0 else '%s-%d' % (s, n))
        anchors_cache[path] = result
    return anchors_cache[path]

readme = os.path.join(root, 'README.md')
docs = sorted(glob.glob(os.path.join(root, 'docs', '*.md')))
if not os.path.isdir(os.path.join(root, 'docs')):
    bad('docs/ exists')
elif not docs:
    bad('docs/ holds .md pages')
else:
    ok('docs/ holds %d .md pages' % len(docs))

link_re = re.compile(r'!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)|<img\s[^>]*src="([^"]+)"')
checked = 0
for md in [readme] + docs:
    if not os.path.exists(md):
        bad('%s exists' % os.path.relpath(md, root))
        continue
    rel = os.path.relpath(md, root)
    text = strip_code(open(md, encoding='utf-8').read())
    for m in link_re.finditer(text):
        target = m.group(1) or m.group(2)
        if re.match(r'^[a-zA-Z][a-zA-Z0-9+.-]*:', target):   # http:, https:, mailto:
            continue
        checked += 1
        path, _, frag = target.partition('#')
        dest = os.path.normpath(os.path.join(os.path.dirname(md), path)) if path else md
        if not os.path.exists(dest):
            bad('%s: link %s: no file %s' % (rel, target, os.path.relpath(dest, root)))
            continue
        if frag:
            if not dest.endswith('.md'):
                bad('%s: link %s: an anchor into a file that is not Markdown' % (rel, target))
            elif frag not in anchors(dest):
                bad('%s: link %s: no heading with the anchor #%s in %s' % (rel, target, frag, os.path.relpath(dest, root)))
if checked:
    ok('%d relative links and anchors checked' % checked)
fails = [l for l in out if l.startswith('FAIL') and ': link ' in l]
if checked and not fails:
    ok('every relative link in README.md and docs/*.md resolves, anchors included')

# the first screen
if os.path.exists(readme):
    first = '\n'.join(open(readme, encoding='utf-8').read().split('\n')[:40])
    for needle in ('LD_PRELOAD=', 'traceagent --check', 'make demo', 'bash scripts/install-deps && make check'):
        (ok if needle in first else bad)("README.md's first 40 lines hold '%s'" % needle)

    # every docs page linked from the README
    rtext = strip_code(open(readme, encoding='utf-8').read())
    linked = set()
    for m in link_re.finditer(rtext):
        target = (m.group(1) or m.group(2)).partition('#')[0]
        if target:
            linked.add(os.path.normpath(os.path.join(root, target)))
    for d in docs:
        (ok if os.path.normpath(d) in linked else bad)('README.md links %s' % os.path.relpath(d, root))
    # a picture from docs/, with an alt text
    pics = re.findall(r'!\[([^\]]*)\]\((docs/[^)\s]+\.svg)\)', rtext)
    if pics and all(alt.strip() for alt, _ in pics):
        ok('README.md shows %s with an alt text' % ', '.join(p for _, p in pics))
    else:
        bad('README.md shows a docs/*.svg picture with an alt text')

# each docs page: a title, then a one-line summary
for d in docs:
    lines = open(d, encoding='utf-8').read().split('\n')
    good = (len(lines) > 3 and lines[0].startswith('# ') and lines[1] == ''
            and lines[2].strip() != '' and not lines[2].startswith(('#', '-', '|', '`', '<'))
            and lines[3] == '')
    (ok if good else bad)('%s opens with a title and a one-line summary' % os.path.relpath(d, root))

svgs = sorted(glob.glob(os.path.join(root, 'docs', '*.svg')))
if not svgs:
    bad('docs/ holds an .svg picture')
for s in svgs:
    try:
        t = ET.parse(s).getroot()
        (ok if t.tag in ('svg', '{http://www.w3.org/2000/svg}svg') else bad)('%s parses as XML with an <svg> root' % os.path.relpath(s, root))
    except ET.ParseError as e:
        bad('%s parses as XML (%s)' % (os.path.relpath(s, root), e))

print('\n'.join(out))
EOF
) || die "the checking program failed"

while IFS= read -r line; do
	case $line in
	PASS\ *) pass "${line#PASS }" ;;
	FAIL\ *) fail "${line#FAIL }" ;;
	esac
done <<<"$results"

finish
