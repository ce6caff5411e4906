#!/usr/bin/env bash
# Fetch an offline English text corpus from Debian packages into DEST, as plain-text files.
#
#   scripts/get_corpus.sh DEST [SOURCE...]
#
# SOURCE (default: kjv austen moby fortunes python):
#   kjv       King James Bible (bible-kjv, bible-kjv-text; its own CLI decodes the data)   ~1.0 M MiniLM tokens
#   austen    Jane Austen's six novels (r-cran-janeaustenr; R data read without R)         ~0.9 M
#   moby      Moby Dick (r-cran-tokenizers)                                                ~0.3 M
#   fortunes  BSD fortunes (fortunes), one quote per paragraph                              ~0.6 M
#   python    Python 3.11 docs, reST sources (python3.11-doc)                              ~3.3 M
#   handbook  Debian Administrator's Handbook, English HTML (debian-handbook, 33 MB deb)   ~0.3 M
#   linux     Linux kernel docs, reST sources without translations (linux-doc-6.1, 37 MB)  ~6.3 M
#
# Needs apt-get (with Debian bookworm sources), dpkg-deb and python3; no root: packages are
# fetched with `apt-get download` and unpacked with `dpkg-deb -x` into a temp folder. Layout:
# DEST/prose/... and DEST/technical/...; pass DEST/prose or DEST to `saescale activations cache --text`.
set -euo pipefail

if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
DEST=$(mkdir -p "$1" && cd "$1" && pwd)
shift
SOURCES=("$@")
[[ ${#SOURCES[@]} -gt 0 ]] || SOURCES=(kjv austen moby fortunes python)
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

for tool in apt-get dpkg-deb python3; do
  command -v "$tool" >/dev/null || { echo "get_corpus: $tool is required" >&2; exit 1; }
done

# fetch PKG...: download the .debs into $WORK and unpack them into $WORK/root
fetch() {
  (cd "$WORK" && apt-get download -q "$@" >/dev/null 2>"$WORK/apt.log") || {
    cat "$WORK/apt.log" >&2
    echo "get_corpus: apt-get download $* failed (try: apt-get update)" >&2
    exit 1
  }
  for pkg in "$@"; do
    dpkg-deb -x "$WORK/${pkg}"_*.deb "$WORK/root"
  done
}

for src in "${SOURCES[@]}"; do
  case $src in
    kjv)
      fetch bible-kjv bible-kjv-text
      mkdir -p "$DEST/prose"
      "$WORK/root/usr/bin/bible" -p "$WORK/root/usr/lib" -l5000 "gen1:1-rev22:21" > "$DEST/prose/kjv.txt"
      ;;
    austen)
      fetch r-cran-janeaustenr
      python3 "$HERE/corpus/rdata_text.py" "$WORK/root/usr/lib/R/site-library/janeaustenr/data/Rdata" "$DEST/prose/austen"
      ;;
    moby)
      fetch r-cran-tokenizers
      python3 "$HERE/corpus/rdata_text.py" "$WORK/root/usr/lib/R/site-library/tokenizers/data/Rdata" "$DEST/prose/moby"
      ;;
    fortunes)
      fetch fortunes
      python3 - "$WORK/root/usr/share/games/fortunes" "$DEST/prose/fortunes" <<'EOF'
import pathlib, sys
src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
for f in sorted(src.iterdir()):
    if f.is_symlink() or f.suffix in (".dat", ".u8") or f.name == "ascii-art":
        continue
    quotes = [q.strip() for q in f.read_text(encoding="utf-8", errors="replace").split("\n%\n") if q.strip()]
    (out / f"{f.name}.txt").write_text("\n\n".join(quotes) + "\n", encoding="utf-8")
EOF
      ;;
    python)
      fetch python3.11-doc
      mkdir -p "$DEST/technical/python"
      cp -r "$WORK/root/usr/share/doc/python3.11/html/_sources/." "$DEST/technical/python/"
      ;;
    handbook)
      fetch debian-handbook
      mkdir -p "$DEST/technical/debian-handbook"
      cp "$WORK/root/usr/share/doc/debian-handbook/html/en-US/"*.html "$DEST/technical/debian-handbook/"
      ;;
    linux)
      fetch linux-doc-6.1
      mkdir -p "$DEST/technical/linux"
      (cd "$WORK/root/usr/share/doc/linux-doc-6.1/html/_sources" && find . -name '*.rst.txt' -not -path './translations/*' \
        -exec cp --parents {} "$DEST/technical/linux/" \;)
      ;;
    *)
      echo "get_corpus: unknown source '$src' (kjv austen moby fortunes python handbook linux)" >&2
      exit 2
      ;;
  esac
  echo "get_corpus: $src done" >&2
done
du -sh "$DEST"/* >&2
