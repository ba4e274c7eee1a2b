#!/usr/bin/env python3
"""Generate the helper benchmark's git repository and cache payload.

`repo` writes a bare repository whose history is fed to `git fast-import`:
the first commit adds FILES text files, and every later commit rewrites a
share of the lines in a share of the files. `payload` writes a directory of
build-output-like files, a third of them random bytes and the rest text, that
the benchmark job archives as its cache.

The content comes from a seeded PRNG, so equal arguments give equal bytes.
Only the standard library and a git on PATH are needed.
"""

import argparse
import os
import random
import subprocess
import sys

# Fixed commit metadata keeps the history identical across generations.
AUTHOR = "Bench Author <bench@example.invalid>"
FIRST_COMMIT_TIME = 1_700_000_000


def make_vocabulary(rng, size):
    """Return SIZE pseudo-words of 2 to 11 lowercase letters."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(2, 11))) for _ in range(size)]


def make_line(rng, words):
    """Return one source-like line: indentation, words and a 32-bit hex constant.

    The hex constant keeps the text from compressing much better than real
    source code does.
    """
    indent = "    " * rng.randrange(4)
    tokens = [rng.choice(words) for _ in range(rng.randint(3, 9))]
    tokens.insert(rng.randrange(len(tokens) + 1), f"0x{rng.getrandbits(32):08x}")
    return indent + " ".join(tokens) + ";\n"


def make_lines(rng, words, count):
    return [make_line(rng, words) for _ in range(count)]


def write_blob_command(stream, path, data):
    """Write a fast-import `M` command with inline DATA for PATH."""
    stream.write(f"M 100644 inline {path}\ndata {len(data)}\n".encode())
    stream.write(data)
    stream.write(b"\n")


def write_commit(stream, number, message, changes):
    """Write commit NUMBER on refs/heads/main with the CHANGES (path, bytes)."""
    stream.write(b"commit refs/heads/main\n")
    stamp = f"{FIRST_COMMIT_TIME + number * 3600} +0000"
    stream.write(f"author {AUTHOR} {stamp}\ncommitter {AUTHOR} {stamp}\n".encode())
    text = message.encode()
    stream.write(f"data {len(text)}\n".encode() + text + b"\n")
    for path, data in changes:
        write_blob_command(stream, path, data)
    stream.write(b"\n")


def generate_repo(args):
    rng = random.Random(args.seed)
    words = make_vocabulary(rng, 4000)
    paths = [
        f"src/module{index % args.directories:03d}/file{index:05d}.c"
        for index in range(args.files)
    ]
    contents = {
        path: make_lines(rng, words, rng.randint(args.lines // 2, args.lines * 3 // 2))
        for path in paths
    }

    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", args.output], check=True)
    importer = subprocess.Popen(
        ["git", "--git-dir", args.output, "fast-import", "--quiet"],
        stdin=subprocess.PIPE,
    )
    stream = importer.stdin

    write_commit(
        stream,
        0,
        f"Add {len(paths)} files\n",
        [(path, "".join(lines).encode()) for path, lines in contents.items()],
    )
    changed_per_commit = max(1, int(len(paths) * args.changed_files))
    for number in range(1, args.commits):
        changes = []
        for path in sorted(rng.sample(paths, changed_per_commit)):
            lines = contents[path]
            for _ in range(max(1, int(len(lines) * args.changed_lines))):
                lines[rng.randrange(len(lines))] = make_line(rng, words)
            changes.append((path, "".join(lines).encode()))
        write_commit(stream, number, f"Change {len(changes)} files, step {number}\n", changes)

    stream.close()
    if importer.wait() != 0:
        sys.exit(f"git fast-import into {args.output} failed with exit status {importer.returncode}")
    # A repack with fresh delta search (-f) gives one pack with deltas, as a
    # server's repository has. Without -f the full-mode pack was twice as large.
    subprocess.run(["git", "--git-dir", args.output, "repack", "-q", "-a", "-d", "-f"], check=True)
    subprocess.run(["git", "--git-dir", args.output, "symbolic-ref", "HEAD", "refs/heads/main"], check=True)


def generate_payload(args):
    rng = random.Random(args.seed)
    words = make_vocabulary(rng, 4000)
    file_size = 256 * 1024
    file_count = max(1, args.size_mib * 1024 * 1024 // file_size)
    os.makedirs(args.output)
    for index in range(file_count):
        directory = os.path.join(args.output, f"obj{index % 16:02d}")
        os.makedirs(directory, exist_ok=True)
        if index % 3 == 0:
            # Stands for already compressed output (archives, images).
            data = rng.randbytes(file_size)
            name = f"blob{index:04d}.bin"
        else:
            text = []
            length = 0
            while length < file_size:
                line = make_line(rng, words)
                text.append(line)
                length += len(line)
            data = "".join(text).encode()[:file_size]
            name = f"unit{index:04d}.o.txt"
        with open(os.path.join(directory, name), "wb") as output:
            output.write(data)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1, help="PRNG seed (default 1)")
    commands = parser.add_subparsers(dest="command", required=True)

    repo = commands.add_parser("repo", help="write a bare git repository")
    repo.add_argument("output", help="path of the new bare repository; must not exist")
    repo.add_argument("--files", type=int, required=True, help="number of files in the first commit")
    repo.add_argument("--directories", type=int, default=60, help="number of directories the files spread over")
    repo.add_argument("--lines", type=int, default=100, help="mean number of lines per file")
    repo.add_argument("--commits", type=int, required=True, help="number of commits, the first included")
    repo.add_argument("--changed-files", type=float, default=0.2, help="share of the files each later commit changes")
    repo.add_argument("--changed-lines", type=float, default=0.3, help="share of a changed file's lines that get replaced")

    payload = commands.add_parser("payload", help="write a directory of build-output-like files")
    payload.add_argument("output", help="path of the new directory; must not exist")
    payload.add_argument("--size-mib", type=int, required=True, help="total size in MiB, in files of 256 KiB")

    args = parser.parse_args()
    if os.path.exists(args.output):
        sys.exit(f"{args.output} already exists; remove it or choose another path")
    if args.command == "repo":
        generate_repo(args)
    else:
        generate_payload(args)


if __name__ == "__main__":
    main()
