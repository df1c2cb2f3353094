#!/usr/bin/env bash
# make_sample_corpora.sh - rebuild sample_corpora/ from Debian packages and a PyPI sdist.
#
# This script is provenance: the files it makes are committed to git, so tests
# and the README demo never need to run it. It records exactly where every
# sample document came from, and lets anyone rebuild or audit the folder.
#
# What it does
#   1. makes a throwaway venv in a scratch dir (pypdf, python-docx, Pillow);
#   2. apt-get download + dpkg -x of the Debian documentation packages below
#      (nothing is installed on the system);
#   3. pip download of the Brotli sdist (its tests/testdata/ holds Canterbury
#      corpus texts);
#   4. copies the chosen documents, gunzips the gzipped ones, and generates the
#      DOCX, EML and image-only PDF from the public-domain texts;
#   5. copies the licence texts into LICENSES/ and writes SHA256SUMS;
#   6. checks every PDF with pypdf and prints the extracted-text budget.
#
# Needs: root (for apt-get update/download), dpkg, gzip, python3 with venv,
# and access to the Debian archive and PyPI through the machine's configured
# apt sources and pip index.
#
# Usage:  bash scripts/make_sample_corpora.sh [OUTDIR]
#         (default OUTDIR: sample_corpora/ at the repo root)
# Env:    KEEP_WORK=1       keep the scratch dir (its path is printed)
#         SKIP_APT_UPDATE=1 do not run apt-get update first
#
# sample_corpora/README.md is hand-written and kept; everything else in OUTDIR
# is deleted and rebuilt.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$(realpath -m "${1:-$REPO/sample_corpora}")
WORK=$(mktemp -d /tmp/docmem-corpora.XXXXXX)
if [ "${KEEP_WORK:-0}" = 1 ]; then
  echo "scratch dir kept: $WORK"
else
  trap 'rm -rf "$WORK"' EXIT
fi

# Versions the committed files were built from (Debian 12 "bookworm").
# apt-get download fetches the current candidate; a different version is
# reported, since the files may then differ from the committed ones.
declare -A DEB_VERSIONS=(
  [python-reportlab-doc]=3.6.12-1+deb12u1
  [r-doc-pdf]=4.2.2.20221110-2
  [debian-faq]=11.1
  [sqlite3-doc]=3.40.1-2+deb12u2
  [nodejs-doc]=18.20.4+dfsg-1~deb12u3
  [docutils-doc]=0.19+dfsg-6
  [fonts-dejavu-core]=2.37-6
  [base-files]=12.4+deb12u15
)
BROTLI_VERSION=1.2.1
PY_TOOLS=(pypdf==7.1.0 python-docx==1.2.0 pillow==13.0.0)

# The chosen pages of the bigger doc sets (the whole sets are far over the
# text budget of the README demo: ~400-500k tokens in all).
SQLITE_PAGES=(datatype3 queryplanner wal whentouse json1 isolation)
NODE_PAGES=(path events stream os timers)

log() { printf '\n== %s\n' "$*"; }

# ---------------------------------------------------------------- 1. tools
log "throwaway venv with ${PY_TOOLS[*]}"
python3 -m venv "$WORK/venv"
PY=$WORK/venv/bin/python
"$PY" -m pip install --quiet --disable-pip-version-check "${PY_TOOLS[@]}"

# ---------------------------------------------------------------- 2. debs
log "Debian packages"
if [ "${SKIP_APT_UPDATE:-0}" != 1 ]; then
  apt-get update -qq
fi
mkdir -p "$WORK/debs" "$WORK/x"
# apt downloads as the unprivileged _apt user where it can write the target dir
if id _apt >/dev/null 2>&1; then chmod 755 "$WORK"; chown _apt "$WORK/debs"; fi
(cd "$WORK/debs" && apt-get download -q "${!DEB_VERSIONS[@]}")
for deb in "$WORK"/debs/*.deb; do
  pkg=$(dpkg-deb -f "$deb" Package)
  ver=$(dpkg-deb -f "$deb" Version)
  if [ "$ver" != "${DEB_VERSIONS[$pkg]}" ]; then
    echo "NOTE: $pkg is $ver here, the committed files were built from ${DEB_VERSIONS[$pkg]}"
  fi
  mkdir -p "$WORK/x/$pkg"
  dpkg -x "$deb" "$WORK/x/$pkg"
done
X=$WORK/x

# ---------------------------------------------------------------- 3. sdist
log "Brotli $BROTLI_VERSION sdist (Canterbury corpus texts)"
mkdir -p "$WORK/pip"
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps \
  --no-binary :all: --dest "$WORK/pip" "Brotli==$BROTLI_VERSION"
tar -xzf "$WORK/pip/brotli-$BROTLI_VERSION.tar.gz" -C "$WORK/pip"
BROTLI=$WORK/pip/brotli-$BROTLI_VERSION

# ---------------------------------------------------------------- 4. files
log "assembling $OUT"
mkdir -p "$OUT"
find "$OUT" -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
mkdir -p "$OUT"/{pdf,html,markdown,rst,text,office,email,scanned,LICENSES}

# PDF
cp "$X/python-reportlab-doc/usr/share/doc/python-reportlab-doc/reportlab-userguide.pdf" "$OUT/pdf/"
# r-doc-pdf's /usr/share/doc/r-doc-pdf/manual/*.pdf are symlinks into /usr/share/R/doc/manual
cp "$X/r-doc-pdf/usr/share/R/doc/manual/R-intro.pdf" "$OUT/pdf/"
gzip -dc "$X/debian-faq/usr/share/doc/debian/FAQ/debian-faq.en.pdf.gz" > "$OUT/pdf/debian-faq.en.pdf"

# HTML: single pages of the SQLite documentation (their css/images are not copied)
for p in "${SQLITE_PAGES[@]}"; do
  cp "$X/sqlite3-doc/usr/share/doc/sqlite3/$p.html" "$OUT/html/sqlite-$p.html"
done

# Markdown: Node.js API docs (shipped gzipped)
for p in "${NODE_PAGES[@]}"; do
  gzip -dc "$X/nodejs-doc/usr/share/doc/nodejs/api/$p.md.gz" > "$OUT/markdown/nodejs-$p.md"
done

# reStructuredText: the Docutils "reStructuredText Primer". Its first line,
# ".. include:: ../../header2.txt" (a navigation bar from a file that is not
# shipped here), is dropped so the file stands alone; nothing else changes.
sed '1{/^\.\. include:: /d}' \
  "$X/docutils-doc/usr/share/doc/docutils-doc/docs/user/rst/quickstart.txt" \
  > "$OUT/rst/docutils-rst-primer.rst"

# Plain text: Canterbury corpus, byte for byte (alice29.txt keeps its CRLF line
# ends and trailing DOS EOF byte 0x1A). plrabn12.txt (Paradise Lost, 470 KB)
# is left out for the text budget.
cp "$BROTLI/tests/testdata/alice29.txt" "$BROTLI/tests/testdata/asyoulik.txt" "$OUT/text/"

# Generated: DOCX, EML, image-only PDF
"$PY" - "$OUT" "$BROTLI/tests/testdata" \
  "$X/fonts-dejavu-core/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf" <<'PYEOF'
import datetime as dt
import email.policy
import io
import random
import re
import sys
import textwrap
import zipfile
from email.message import EmailMessage
from email.utils import format_datetime
from html import escape
from pathlib import Path

import docx
from docx.shared import Pt
from PIL import Image, ImageDraw, ImageFilter, ImageFont

out, testdata, font_path = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
FIXED = dt.datetime(2024, 3, 4, 9, 30, tzinfo=dt.timezone.utc)


def clean(s):
    """Drop control bytes other than tab/newline (lxml rejects e.g. 0x1A)."""
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "", s.replace("\r\n", "\n"))


def blocks(lines):
    """Group lines into blank-line separated blocks."""
    cur = []
    for line in lines:
        if line.strip():
            cur.append(line)
        elif cur:
            yield cur
            cur = []
    if cur:
        yield cur


# ------------------------------------------------------------ Alice
def alice_chapters():
    lines = clean((testdata / "alice29.txt").read_text("ascii")).split("\n")
    starts = [i for i, l in enumerate(lines) if re.fullmatch(r"\s*CHAPTER [IVXL]+\s*", l)]
    chapters = []
    for n, i in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        j = i + 1
        while not lines[j].strip():
            j += 1
        paras = []
        for b in blocks(lines[j + 1:end]):
            if b[0].strip() == "THE END":
                continue
            verse = len(b) > 1 and all(len(l) - len(l.lstrip()) >= 4 for l in b)
            paras.append(("verse", [l.strip() for l in b]) if verse
                         else ("prose", " ".join(l.strip() for l in b)))
        chapters.append((lines[i].split()[1], lines[j].strip(), paras))
    return chapters


ALICE = alice_chapters()
assert len(ALICE) == 12, len(ALICE)


def chapter_text(ch, width=None):
    out_lines = []
    for kind, p in ch[2]:
        if kind == "verse":
            out_lines += ["    " + l for l in p]
        else:
            out_lines += textwrap.wrap(p, width) if width else [p]
        out_lines.append("")
    return "\n".join(out_lines).rstrip() + "\n"


# ------------------------------------------------------------ As You Like It
def ayli():
    lines = clean((testdata / "asyoulik.txt").read_text("ascii")).split("\n")
    dp_start = lines.index("\tDRAMATIS PERSONAE")
    dp_end = next(i for i, l in enumerate(lines) if l.startswith("SCENE\t"))
    roles = []
    for b in blocks(lines[dp_start + 1:dp_end]):
        if any("|" in l for l in b):
            names = [l.split("|")[0].strip() for l in b if l.split("|")[0].strip()]
            desc = " ".join(l.split("|", 1)[1].strip() for l in b
                            if "|" in l and l.split("|", 1)[1].strip())
            roles += [(n, desc) for n in names]
            continue
        for l in b:
            if re.fullmatch(r"\s*\(.*:\)\s*", l):
                continue          # speech-prefix aliases such as "(First Lord:)"
            name, _, desc = l.partition("\t")
            roles.append((name.strip(), desc.strip()))
    acts = {}                     # act -> [(scene, place, [items])]
    act = None
    for b in blocks(lines[dp_end + 2:]):
        head = b[0]
        if head == "\tAS YOU LIKE IT":
            b = b[1:]
            if not b:
                continue
            head = b[0]
        if re.fullmatch(r"ACT [IVX]+", head):
            act = head
            acts.setdefault(act, [])
            continue
        m = re.fullmatch(r"SCENE ([IVX]+)\t(.*)", head)
        if m:
            acts[act].append((m.group(1), m.group(2).strip(), []))
            continue
        items = acts[act][-1][2]
        if head.startswith("\t["):
            items.append(("direction", " ".join(l.strip() for l in b)))
        elif head.startswith("\t"):
            items.append(("verse", None, [l.strip() for l in b]))
        else:
            speaker, _, first = head.partition("\t")
            items.append(("speech", speaker.strip(), [first.strip()] + [l.strip() for l in b[1:]]))
    return roles, acts


ROLES, ACTS = ayli()


# ------------------------------------------------------------ DOCX
def normalize_zip(path):
    """Rewrite a zip with fixed timestamps so rebuilds are byte-identical."""
    src = zipfile.ZipFile(path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            zi = zipfile.ZipInfo(info.filename, date_time=(2024, 3, 4, 9, 30, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            dst.writestr(zi, src.read(info.filename))
    src.close()
    path.write_bytes(buf.getvalue())


def new_doc(title, author, subject):
    d = docx.Document()
    cp = d.core_properties
    cp.title, cp.author, cp.subject = title, author, subject
    cp.last_modified_by = "docmem sample_corpora"
    cp.created = cp.modified = FIXED.replace(tzinfo=None)
    cp.revision = 1
    return d


def add_alice_chapter(d, ch):
    num, title, paras = ch
    d.add_heading(f"Chapter {num}. {title}", level=2)
    for kind, p in paras:
        if kind == "verse":
            para = d.add_paragraph()
            for k, line in enumerate(p):
                run = para.add_run(line)
                if k < len(p) - 1:
                    run.add_break()
            para.paragraph_format.left_indent = Pt(36)
        else:
            d.add_paragraph(p)


def save(d, path):
    d.save(path)
    normalize_zip(path)


d = new_doc("Alice's Adventures in Wonderland, Chapters I-II", "Lewis Carroll",
            "Public-domain text from the Canterbury corpus (alice29.txt)")
d.add_heading("Alice's Adventures in Wonderland", level=0)
d.add_paragraph("Lewis Carroll. The Millennium Fulcrum Edition 2.9.")
d.add_heading("Alice's Adventures in Wonderland", level=1)
for ch in ALICE[:2]:
    add_alice_chapter(d, ch)
save(d, out / "office" / "alice-chapters-1-2.docx")

d = new_doc("A Mad Tea-Party", "Lewis Carroll",
            "Chapter VII of Alice's Adventures in Wonderland (public domain)")
d.add_heading("A Mad Tea-Party", level=0)
d.add_heading("Alice's Adventures in Wonderland", level=1)
add_alice_chapter(d, ALICE[6])
save(d, out / "office" / "alice-chapter-7-mad-tea-party.docx")

d = new_doc("As You Like It, Act II", "William Shakespeare",
            "Public-domain text from the Canterbury corpus (asyoulik.txt)")
d.add_heading("As You Like It", level=0)
d.add_paragraph("William Shakespeare. Act II, with the list of characters.")
d.add_heading("Dramatis Personae", level=1)
table = d.add_table(rows=1, cols=2)
table.style = "Table Grid"
table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Character", "Description"
for name, desc in ROLES:
    row = table.add_row().cells
    row[0].text, row[1].text = name, desc
d.add_heading("Act II", level=1)
for scene, place, items in ACTS["ACT II"]:
    d.add_heading(f"Scene {scene}. {place}", level=2)
    for item in items:
        para = d.add_paragraph()
        if item[0] == "direction":
            para.add_run(item[1]).italic = True
            continue
        if item[1]:
            para.add_run(item[1]).bold = True
            para.add_run("\t")
        for k, line in enumerate(item[2]):
            run = para.add_run(line)
            if k < len(item[2]) - 1:
                run.add_break()
save(d, out / "office" / "as-you-like-it-act-2.docx")


# ------------------------------------------------------------ EML
def message(subject, sender, to, date, msgid, **extra):
    m = EmailMessage(policy=email.policy.default)
    m["Subject"] = subject
    m["From"] = sender
    m["To"] = to
    m["Date"] = format_datetime(date)
    m["Message-ID"] = msgid
    for k, v in extra.items():
        m[k.replace("_", "-")] = v
    return m


ch1 = ALICE[0]
d1 = dt.datetime(2024, 3, 4, 18, 12, 5, tzinfo=dt.timezone(dt.timedelta(hours=1)))
m = message("Reading group: Chapter I, \"Down the Rabbit-Hole\"",
            "Margaret Hale <margaret.hale@example.org>",
            "Thursday Reading Group <reading-group@example.net>", d1,
            "<20240304181205.4f1c@mail.example.org>")
m.set_content(
    "Hello all,\n\n"
    "As promised on Thursday, here is the whole of the first chapter of\n"
    "\"Alice's Adventures in Wonderland\" (Lewis Carroll, the Millennium\n"
    "Fulcrum Edition 2.9, which is in the public domain), so nobody has to\n"
    "hunt for a copy before next week. Please read it before we meet; we\n"
    "will start with the fall down the well and the little golden key.\n\n"
    "Questions to think about:\n"
    "  1. Why does Alice keep talking to herself while she falls?\n"
    "  2. What does the bottle marked \"DRINK ME\" tell us about her?\n\n"
    "Best wishes,\nMargaret\n\n"
    f"---------- CHAPTER {ch1[0]}: {ch1[1]} ----------\n\n"
    + chapter_text(ch1, 72), cte="quoted-printable")
(out / "email" / "reading-group-chapter-1.eml").write_bytes(bytes(m))

quote = [p for kind, p in ch1[2] if kind == "prose"]
quoted = "\n".join(("> " + l).rstrip() for l in
                   textwrap.wrap(quote[0], 70) + [""] + textwrap.wrap(quote[1], 70))
d2 = dt.datetime(2024, 3, 5, 8, 47, 31, tzinfo=dt.timezone.utc)
m = message("Re: Reading group: Chapter I, \"Down the Rabbit-Hole\"",
            "Tom Brierley <tom.brierley@example.com>",
            "Thursday Reading Group <reading-group@example.net>", d2,
            "<CAB7x2-q9w@mail.example.com>",
            In_Reply_To="<20240304181205.4f1c@mail.example.org>",
            References="<20240304181205.4f1c@mail.example.org>")
m.set_content(
    "Thanks Margaret.\n\n"
    "On Mon, 4 Mar 2024 at 18:12, Margaret Hale <margaret.hale@example.org> wrote:\n"
    + quoted + "\n\n"
    "I love that the book opens with a complaint about books without\n"
    "pictures or conversations. I'll bring the Tenniel illustrations on\n"
    "Thursday so we can compare the rabbit with the text.\n\n"
    "Tom\n")
(out / "email" / "re-reading-group-chapter-1.eml").write_bytes(bytes(m))

act2 = ACTS["ACT II"]
scene7 = next(s for s in act2 if s[0] == "VII")


def scene_plain(scene):
    parts = [f"SCENE {scene[0]}. {scene[1]}", ""]
    for item in scene[2]:
        if item[0] == "direction":
            parts += [item[1], ""]
        else:
            if item[1]:
                parts.append(item[1])
            parts += ["    " + l for l in item[2]] + [""]
    return "\n".join(parts)


def scene_html(scene):
    h = [f"<h2>Scene {escape(scene[0])}. {escape(scene[1])}</h2>"]
    for item in scene[2]:
        if item[0] == "direction":
            h.append(f"<p><i>{escape(item[1])}</i></p>")
        else:
            who = f"<b>{escape(item[1])}</b><br>\n" if item[1] else ""
            h.append("<p>" + who + "<br>\n".join(escape(l) for l in item[2]) + "</p>")
    return "\n".join(h)


intro = ("Dear Priya,\n\n"
         "For Friday's rehearsal of the Forest of Arden scenes, here is Act II,\n"
         "Scene VII of \"As You Like It\" (public domain). Jaques' speech \"All the\n"
         "world's a stage\" is the one we will block first, so please learn it\n"
         "before then; Orlando's entrance with Adam follows straight after.\n\n"
         "Thanks,\nDaniel\n")
d3 = dt.datetime(2024, 3, 6, 21, 3, 44, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
m = message("As You Like It, Act II Scene VII (\"All the world's a stage\")",
            "Daniel Okafor <d.okafor@example.org>",
            "Priya Raman <priya.raman@example.com>", d3,
            "<b8e1f0c2.7a30@example.org>", Cc="Stage Management <sm@example.org>")
m.set_content(intro + "\n\n" + scene_plain(scene7), cte="quoted-printable")
m.add_alternative(
    "<html><body>\n<p>" + escape(intro).replace("\n\n", "</p>\n<p>").replace("\n", "<br>\n")
    + "</p>\n<hr>\n<h1>As You Like It, Act II</h1>\n" + scene_html(scene7)
    + "\n</body></html>\n", subtype="html", cte="quoted-printable")
m.set_boundary("==docmem-sample-alt-1==")     # fixed, so rebuilds are identical
(out / "email" / "as-you-like-it-seven-ages.eml").write_bytes(bytes(m))


# ------------------------------------------------------------ scanned PDF
W, H, DPI = 1240, 1754, 150          # A4 at 150 dpi
img = Image.new("L", (W, H), 246)
draw = ImageDraw.Draw(img)
body_font = ImageFont.truetype(font_path, 27)
small = ImageFont.truetype(font_path, 22)
draw.text((W // 2, 150), "ALICE'S ADVENTURES IN WONDERLAND", font=small, fill=40, anchor="mm")
ch2 = ALICE[1]
draw.text((W // 2, 260), f"CHAPTER {ch2[0]}", font=body_font, fill=25, anchor="mm")
draw.text((W // 2, 310), ch2[1], font=body_font, fill=25, anchor="mm")
y, bottom = 400, H - 200
lines = []                               # (indent, text) lines, blank between paragraphs
for kind, p in ch2[2]:
    lines += [(110, l) for l in p] if kind == "verse" else [(0, l) for l in textwrap.wrap(p, 66)]
    lines.append(None)
for line in lines:
    if line is None:
        y += 18
        continue
    if y > bottom:
        break
    draw.text((150 + line[0], y), line[1], font=body_font, fill=25)
    y += 40
draw.text((W // 2, H - 130), "12", font=small, fill=40, anchor="mm")
rng = random.Random(1865)                # speckles, like a photocopy
for _ in range(2500):
    x, yy = rng.randrange(W), rng.randrange(H)
    draw.point((x, yy), fill=rng.randrange(90, 200))
img = img.rotate(0.45, resample=Image.BICUBIC, fillcolor=246).filter(ImageFilter.GaussianBlur(0.7))
img.save(out / "scanned" / "scanned-page.pdf", resolution=DPI, quality=70,
         title="Scanned page (image only)", creationDate=FIXED.timetuple(), modDate=FIXED.timetuple())
print("generated DOCX, EML and scanned PDF")
PYEOF

# ---------------------------------------------------------------- 5. licences
log "licences"
L=$OUT/LICENSES
D=usr/share/doc
cp "$X/python-reportlab-doc/$D/python-reportlab-doc/copyright" "$L/python-reportlab-doc.copyright"
cp "$X/r-doc-pdf/$D/r-doc-pdf/copyright" "$L/r-doc-pdf.copyright"
cp "$X/base-files/usr/share/common-licenses/GPL-2" "$L/GPL-2"
cp "$X/debian-faq/$D/debian-faq/copyright" "$L/debian-faq.copyright"
cp "$X/sqlite3-doc/$D/sqlite3-doc/copyright" "$L/sqlite3-doc.copyright"
cp "$X/docutils-doc/$D/docutils-doc/copyright" "$L/docutils-doc.copyright"
# nodejs-doc's copyright file covers all of Node.js and its bundled deps; keep
# the header, the "Files: *" stanza (which covers doc/api) and the Expat text.
awk 'BEGIN { RS = ""; ORS = "\n\n" }
     NR == 1 { n = split($0, a, "\n"); s = "";
               for (i = 1; i <= n; i++) if (a[i] ~ /^(Format|Upstream-Name|Upstream-Contact):/) s = s a[i] "\n";
               printf "%s\n", s; next }
     /^Files: \*\n/ || /^License: Expat\n/ { print }' \
  "$X/nodejs-doc/$D/nodejs-doc/copyright" > "$L/nodejs-doc.copyright.excerpt"
cat > "$L/canterbury-corpus.public-domain" <<'EOF'
alice29.txt and asyoulik.txt are texts of the Canterbury corpus (Ross Arnold and
Tim Bell, University of Canterbury, 1997), copied byte for byte from
tests/testdata/ of the Brotli sdist (the Brotli code itself is MIT-licensed;
these test files are not part of that code).

  alice29.txt   Lewis Carroll, "Alice's Adventures in Wonderland",
                The Millennium Fulcrum Edition 2.9 (Project Gutenberg etext).
                Published 1865; public domain.
  asyoulik.txt  William Shakespeare, "As You Like It" (first printed 1623).
                Public domain.

The DOCX and EML files in office/ and email/ quote these public-domain texts.
The people, addresses and messages around the quotations in email/ are
invented; every address is under the example.org/.com/.net domains reserved
for documentation (RFC 2606).

scanned/scanned-page.pdf is the opening of Chapter II of alice29.txt, drawn as
a raster image with the DejaVu Serif font (Debian package fonts-dejavu-core).
EOF

# ---------------------------------------------------------------- 6. checks
log "checks"
(cd "$OUT" && find . -type f ! -name SHA256SUMS ! -name README.md -print0 | sort -z \
  | xargs -0 sha256sum > SHA256SUMS)
"$PY" - "$OUT" <<'PYEOF'
import email
import email.policy
import html.parser
import sys
from pathlib import Path

import docx
import pypdf

out = Path(sys.argv[1])


class Text(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts, self.skip = [], 0

    def handle_starttag(self, tag, attrs):
        self.skip += tag in ("script", "style")

    def handle_endtag(self, tag):
        self.skip -= tag in ("script", "style")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def text_of(p):
    ext = p.suffix.lower()
    if ext == ".pdf":
        r = pypdf.PdfReader(p)
        return "\n".join(pg.extract_text() or "" for pg in r.pages), f"{len(r.pages)} pages"
    if ext == ".html":
        t = Text()
        t.feed(p.read_text("utf-8", "replace"))
        return " ".join(" ".join(t.parts).split()), ""
    if ext == ".docx":
        d = docx.Document(p)
        heads = [x.style.name for x in d.paragraphs if x.style.name.startswith(("Heading", "Title"))]
        cells = [c.text for t in d.tables for row in t.rows for c in row.cells]
        return "\n".join([x.text for x in d.paragraphs] + cells), \
            f"{heads.count('Heading 1')} H1, {heads.count('Heading 2')} H2, {len(d.tables)} tables"
    if ext == ".eml":
        m = email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        body = m.get_body(("plain",)).get_content()
        return body, f"subject={m['Subject']!r}"
    return p.read_text("utf-8", "replace"), ""


total_chars = total_bytes = 0
bad = []
for p in sorted(out.rglob("*")):
    if not p.is_file() or p.parent.name == "LICENSES" or p.name == "SHA256SUMS":
        continue
    text, note = text_of(p)
    n = len(text.strip())
    total_chars += n
    total_bytes += p.stat().st_size
    print(f"{p.relative_to(out)!s:45} {p.stat().st_size:>9} B {n:>8} chars  {note}")
    if p.suffix == ".pdf" and (n == 0) != (p.parent.name == "scanned"):
        bad.append(p)
lic = sum(p.stat().st_size for p in (out / "LICENSES").iterdir())
print(f"\ndocuments: {total_bytes} bytes, {total_chars} chars of text, ~{total_chars // 4} tokens (chars/4)")
print(f"LICENSES/: {lic} bytes (no document extensions, not meant for ingestion)")
if bad:
    sys.exit(f"PDF text check failed for: {bad}")
print("PDF check: every PDF opens; all but scanned/ yield text, scanned/ yields none")
PYEOF
log "done: $OUT"
