#!/bin/sh
# dkv installer: downloads the release binary for this OS and CPU, verifies its SHA-256
# against the release's SHA256SUMS, and installs it as `dkv`. Nothing is installed when
# the download or the checksum fails.
#
#   curl -fsSL <base-url>/install.sh | sh
#   curl -fsSL <base-url>/install.sh | sh -s -- --path ~/bin
#
# Environment:
#   DKV_INSTALL_BASE_URL  where dkv-<os>-<arch> and SHA256SUMS are downloaded from
#   DKV_SOURCE_REPO       git URL cloned by --source when not run from a checkout
set -eu

DEFAULT_BASE_URL="https://github.com/dkv-dev/dkv/releases/latest/download"
DEFAULT_SOURCE_REPO="https://github.com/dkv-dev/dkv.git"

BASE_URL="${DKV_INSTALL_BASE_URL:-$DEFAULT_BASE_URL}"
SOURCE_REPO="${DKV_SOURCE_REPO:-$DEFAULT_SOURCE_REPO}"
INSTALL_DIR=""
FROM_SOURCE=0
WORK_DIR=""

usage() {
  cat <<EOF
dkv installer

Usage: install.sh [--path DIR] [--source] [--base-url URL] [--help]

Options:
  --path DIR       Install dkv into DIR (default: /usr/local/bin when writable, else ~/.local/bin)
  --source         Build from source with Bun (bun install && bun run build.ts) instead of
                   downloading a binary: uses the checkout this script is in, or clones
                   \$DKV_SOURCE_REPO (default: $DEFAULT_SOURCE_REPO)
  --base-url URL   Download from URL instead of \$DKV_INSTALL_BASE_URL
                   (default: $DEFAULT_BASE_URL)
  -h, --help       Show this help

The binary dkv-<os>-<arch> (os: linux, darwin; arch: x64, arm64) is checked against the
SHA256SUMS file published next to it; a mismatch aborts and installs nothing.
EOF
}

say() { printf '%s\n' "dkv-install: $*" >&2; }
fail() {
  say "error: $*"
  exit 1
}

cleanup() {
  if [ -n "$WORK_DIR" ] && [ -d "$WORK_DIR" ]; then rm -rf "$WORK_DIR"; fi
}
trap cleanup EXIT INT TERM

while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help)
      usage
      exit 0
      ;;
    --source) FROM_SOURCE=1 ;;
    --path=*) INSTALL_DIR="${1#*=}" ;;
    --path)
      [ $# -ge 2 ] || { usage >&2; fail "--path needs a directory"; }
      INSTALL_DIR="$2"
      shift
      ;;
    --base-url=*) BASE_URL="${1#*=}" ;;
    --base-url)
      [ $# -ge 2 ] || { usage >&2; fail "--base-url needs a URL"; }
      BASE_URL="$2"
      shift
      ;;
    *)
      usage >&2
      say "error: unknown option $1"
      exit 2
      ;;
  esac
  shift
done
BASE_URL="${BASE_URL%/}"

detect_target() {
  case "$(uname -s)" in
    Linux) OS=linux ;;
    Darwin) OS=darwin ;;
    MINGW* | MSYS* | CYGWIN*) fail "on Windows download dkv-windows-x64.exe from $BASE_URL instead" ;;
    *) fail "unsupported operating system $(uname -s); try --source" ;;
  esac
  case "$(uname -m)" in
    x86_64 | amd64) ARCH=x64 ;;
    aarch64 | arm64) ARCH=arm64 ;;
    *) fail "unsupported CPU $(uname -m); try --source" ;;
  esac
  # A shell under Rosetta reports x86_64 on Apple silicon: prefer the native binary.
  if [ "$OS" = darwin ] && [ "$ARCH" = x64 ] && [ "$(sysctl -n sysctl.proc_translated 2>/dev/null || echo 0)" = 1 ]; then
    ARCH=arm64
  fi
}

download() { # url file
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 2 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$2" "$1"
  else
    fail "neither curl nor wget is installed"
  fi
}

sha256_of() { # file
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d ' ' -f 1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d ' ' -f 1
  else
    fail "neither sha256sum nor shasum is installed; cannot verify the download"
  fi
}

choose_install_dir() {
  if [ -n "$INSTALL_DIR" ]; then return; fi
  # DKV_INSTALL_SYSTEM_DIR exists so the fallback can be tested without touching /usr/local.
  system_dir="${DKV_INSTALL_SYSTEM_DIR:-/usr/local/bin}"
  if [ -d "$system_dir" ] && [ -w "$system_dir" ]; then
    INSTALL_DIR="$system_dir"
  else
    [ -n "${HOME:-}" ] || fail "HOME is not set; pass --path DIR"
    INSTALL_DIR="$HOME/.local/bin"
  fi
}

# Copies the verified binary next to its destination, then renames it: an interrupted
# install never leaves a half-written dkv behind.
install_binary() { # file
  choose_install_dir
  mkdir -p "$INSTALL_DIR" || fail "cannot create $INSTALL_DIR; pass --path DIR or run with sudo"
  [ -w "$INSTALL_DIR" ] || fail "$INSTALL_DIR is not writable; pass --path DIR or run with sudo"
  staged="$INSTALL_DIR/.dkv.install.$$"
  cp "$1" "$staged" || fail "cannot write to $INSTALL_DIR"
  chmod 755 "$staged"
  mv -f "$staged" "$INSTALL_DIR/dkv" || {
    rm -f "$staged"
    fail "cannot replace $INSTALL_DIR/dkv"
  }
  say "installed $INSTALL_DIR/dkv ($("$INSTALL_DIR/dkv" version 2>/dev/null || echo 'version unknown'))"
  case ":${PATH:-}:" in
    *":$INSTALL_DIR:"*) ;;
    *) say "note: $INSTALL_DIR is not on your PATH; add it, or run $INSTALL_DIR/dkv" ;;
  esac
}

install_from_release() {
  detect_target
  name="dkv-$OS-$ARCH"
  WORK_DIR="$(mktemp -d)"
  say "downloading $BASE_URL/$name"
  download "$BASE_URL/$name" "$WORK_DIR/$name" || fail "could not download $BASE_URL/$name"
  download "$BASE_URL/SHA256SUMS" "$WORK_DIR/SHA256SUMS" || fail "could not download $BASE_URL/SHA256SUMS"
  expected="$(awk -v file="$name" '$2 == file || $2 == "*" file { print $1; exit }' "$WORK_DIR/SHA256SUMS")"
  [ -n "$expected" ] || fail "SHA256SUMS has no entry for $name; nothing installed"
  actual="$(sha256_of "$WORK_DIR/$name")"
  if [ "$actual" != "$expected" ]; then
    fail "checksum mismatch for $name (expected $expected, got $actual); nothing installed"
  fi
  say "checksum verified ($actual)"
  install_binary "$WORK_DIR/$name"
}

install_from_source() {
  command -v bun >/dev/null 2>&1 || fail "--source needs Bun (https://bun.sh, or: npm install -g bun)"
  script_dir="$(cd "$(dirname "$0")" 2>/dev/null && pwd || echo "")"
  if [ -n "$script_dir" ] && [ -f "$script_dir/build.ts" ] && [ -f "$script_dir/cli/main.ts" ]; then
    checkout="$script_dir"
  else
    command -v git >/dev/null 2>&1 || fail "--source outside a checkout needs git"
    WORK_DIR="$(mktemp -d)"
    checkout="$WORK_DIR/dkv"
    say "cloning $SOURCE_REPO"
    git clone --depth 1 "$SOURCE_REPO" "$checkout" || fail "could not clone $SOURCE_REPO"
  fi
  say "building in $checkout"
  (cd "$checkout" && bun install --frozen-lockfile && bun run build.ts) || fail "build failed; nothing installed"
  install_binary "$checkout/dist/dkv"
}

if [ "$FROM_SOURCE" = 1 ]; then
  install_from_source
else
  install_from_release
fi
