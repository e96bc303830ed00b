"""Writes shim/hot-symbols.txt for scripts/hot-symbols, from what a workload touched.

  hot_symbols.py coverage RAN_FROM BINARY COV_LOG DEST
      first list, from the coverage log of an instrumented build and the pages it touched
  hot_symbols.py fixup RAN_FROM BINARY FIRST DEST
      adds functions on pages a release build (linked with FIRST) touched outside FIRST

RAN_FROM is the copy of BINARY the workload ran, on a file system without readahead, so that
its pages in the page cache are the pages some process touched. BINARY keeps its symbols.
"""
import bisect
import collections
import ctypes
import os
import subprocess
import sys


def cached_pages(path):
    """Indexes of the file's pages in the page cache (mincore on a new mapping touches none)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    addr = libc.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
    npages = (size + 4095) // 4096
    vec = (ctypes.c_ubyte * npages)()
    if libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec) != 0:
        sys.exit("mincore %s: errno %d" % (path, ctypes.get_errno()))
    os.close(fd)
    return {i for i in range(npages) if vec[i] & 1}, npages


def symbols(binary):
    """(address, size, name) of every function of `binary`, by address."""
    syms = []
    out = subprocess.run(["nm", "-S", "--defined-only", binary], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) == 4 and f[2] in "tTwW" and int(f[1], 16) > 0:
            syms.append((int(f[0], 16), int(f[1], 16), f[3]))
    return sorted(syms)


def touched_functions(ran_from, binary):
    """All functions of `binary`, and those on a page some process touched."""
    cached, npages = cached_pages(ran_from)
    loads = []
    out = subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "LOAD":
            loads.append((int(f[1], 16), int(f[2], 16), int(f[4], 16)))
    touched = set()
    for page in cached:
        for off, vaddr, filesz in loads:
            if off <= page * 4096 < off + filesz:
                touched.add((vaddr + page * 4096 - off) // 4096)
    syms = symbols(binary)
    on = [s for s in syms
          if any(p in touched for p in range(s[0] // 4096, (s[0] + s[1] - 1) // 4096 + 1))]
    print("%d of %d pages of the binary touched" % (len(cached), npages))
    return syms, on


def write(dest, sections, size_of):
    with open(dest, "w") as f:
        f.write("# Written by scripts/hot-symbols: the linker places these functions first, "
                "in this order.\n")
        for title, names in sections:
            f.write("# %s\n" % title)
            f.write("".join(n + "\n" for n in names))
    print("; ".join("%s: %d functions, %d KiB"
                    % (t, len(n), sum(size_of.get(x, 0) for x in n) // 1024)
                    for t, n in sections))


def read(path):
    sections = []
    for line in open(path):
        line = line.rstrip("\n")
        if line.startswith("# Written"):
            continue
        if line.startswith("# "):
            sections.append((line[2:], []))
        elif line:
            sections[-1][1].append(line)
    return sections


def coverage(ran_from, binary, cov_log, dest):
    syms, on_touched = touched_functions(ran_from, binary)
    starts = [s[0] for s in syms]
    size_of = {s[2]: s[1] for s in syms}
    ran = collections.defaultdict(list)  # pid -> functions, in the order it first ran them
    for line in open(cov_log):
        pid, pc = line.split()
        pc = int(pc, 16)
        i = bisect.bisect_right(starts, pc) - 1
        if i >= 0 and syms[i][0] <= pc < syms[i][0] + syms[i][1]:
            ran[pid].append(syms[i][2])

    # The server is forked from the `start` process: both run the long-running shim's code.
    def is_server(names):
        return any("13become_server" in n or "28containerd_shim_lifecycle_v15start" in n
                   for n in names)

    seen = set()

    def fresh(names):
        out = []
        for n in names:
            if n not in seen:
                seen.add(n)
                out.append(n)
        return out

    # Functions every server ran (the plain create/start/serve path) first, those only some
    # ran (hooks, exec, the demo's log file) after them; by first run among equals.
    servers = [names for names in ran.values() if is_server(names)]
    if not servers:
        sys.exit("no server process in the coverage log %s" % cov_log)
    count = collections.Counter(n for names in servers for n in set(names))
    first = {}
    for names in servers:
        for n in names:
            first.setdefault(n, len(first))
    server = fresh(sorted(count, key=lambda n: (-count[n], first[n])))
    # glibc and std are linked precompiled, without coverage: functions on touched pages. The
    # Rust symbols of this build's crates (legacy mangling, _ZN) are known exactly.
    runtime = fresh([s[2] for s in on_touched
                     if not s[2].startswith("_ZN") and not s[2].startswith("__sanitizer_cov")])
    other = fresh([n for names in ran.values() if not is_server(names) for n in names])
    write(dest, [("server, the most common first", server), ("glibc and std", runtime),
                 ("other processes", other)], size_of)


def fixup(ran_from, binary, first, dest):
    syms, on_touched = touched_functions(ran_from, binary)
    size_of = {s[2]: s[1] for s in syms}
    sections = [s for s in read(first) if s[0] != "on pages the release build touched"]
    listed = {n for _, names in sections for n in names}
    more = [s[2] for s in on_touched if s[2] not in listed]
    sections.insert(1, ("on pages the release build touched", more))
    write(dest, sections, size_of)


if __name__ == "__main__":
    {"coverage": coverage, "fixup": fixup}[sys.argv[1]](*sys.argv[2:])
