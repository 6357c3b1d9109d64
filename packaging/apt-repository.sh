#!/bin/sh
# Build (or add to) a signed flat APT repository: apt-repository.sh REPO_DIR PACKAGE.deb...
#
# REPO_DIR gets the packages, Packages(.gz), Release, InRelease and Release.gpg, and the public key
# ethoscope-rsync-archive-keyring.gpg (binary, for signed-by=) and .asc. Packages already in REPO_DIR
# stay (apt picks the newest; a lab can pin or downgrade). Publish REPO_DIR as it is on any web server
# or share (README, "Installing on a real node").
#
# The signing key: REPO_KEY (a key id or fingerprint) from GNUPGHOME, when set; otherwise the lab's own
# key in REPO_GNUPGHOME (default ~/.local/share/ethoscope-rsync/apt-key), generated there on first use
# (ed25519, no passphrase, no expiry). Keep that folder: a new key means every node must trust it again.
set -eu

if [ $# -lt 2 ]; then
    echo "usage: $0 REPO_DIR PACKAGE.deb..." >&2
    exit 2
fi
repo=$1
shift
for deb in "$@"; do
    case "$deb" in
        *.deb) [ -f "$deb" ] || { echo "$0: no such package: $deb" >&2; exit 2; } ;;
        *) echo "$0: not a .deb: $deb" >&2; exit 2 ;;
    esac
done
for tool in apt-ftparchive gpg; do
    command -v "$tool" >/dev/null || { echo "$0: $tool is missing (apt install apt-utils gpg)" >&2; exit 3; }
done

if [ -n "${REPO_KEY:-}" ]; then
    key=$REPO_KEY
else
    GNUPGHOME=${REPO_GNUPGHOME:-$HOME/.local/share/ethoscope-rsync/apt-key}
    export GNUPGHOME
    mkdir -p "$GNUPGHOME"
    chmod 0700 "$GNUPGHOME"
    uid="ethoscope-rsync packages of $(hostname -f 2>/dev/null || hostname)"
    if ! gpg --batch --list-secret-keys "$uid" >/dev/null 2>&1; then
        gpg --batch --quiet --passphrase '' --quick-gen-key "$uid" ed25519 sign never
        echo "$0: generated the signing key \"$uid\" in $GNUPGHOME (keep it)"
    fi
    key=$uid
fi

mkdir -p "$repo"
cp -f "$@" "$repo/"
cd "$repo"
apt-ftparchive packages . > Packages
gzip -9nc Packages > Packages.gz
apt-ftparchive \
    -o APT::FTPArchive::Release::Origin=ethoscope-rsync \
    -o APT::FTPArchive::Release::Label=ethoscope-rsync \
    -o APT::FTPArchive::Release::Suite=stable \
    -o APT::FTPArchive::Release::Codename=ethoscope-rsync \
    -o "APT::FTPArchive::Release::Description=ethoscope-rsync for Debian 12 and 13" \
    release . > Release.new
mv Release.new Release
rm -f InRelease Release.gpg
gpg --batch --yes --local-user "$key" --digest-algo SHA512 --clearsign -o InRelease Release
gpg --batch --yes --local-user "$key" --digest-algo SHA512 --detach-sign -o Release.gpg Release
gpg --batch --yes --export "$key" > ethoscope-rsync-archive-keyring.gpg
gpg --batch --yes --armor --export "$key" > ethoscope-rsync-archive-keyring.asc
echo "$0: $(grep -c '^Package:' Packages) package(s) in $(pwd), signed by $(gpg --batch --with-colons --fingerprint "$key" | awk -F: '/^fpr/ {print $10; exit}')"
