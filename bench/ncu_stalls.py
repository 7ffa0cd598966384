"""Warp-stall summary of one kernel from `ncu --page source --csv --print-source sass` output
(as bench/run_kernel_ab.sh writes it): the stall reasons over all samples, then the
instructions with the most samples and their two main reasons.

Usage: python3 bench/ncu_stalls.py <ncu_..._sass.csv> [top N]
"""
import csv
import sys


def main():
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    rows = list(csv.reader(open(path)))
    # Line 1 names the kernel; line 2 is the header.
    header = rows[1]
    col = header.index("Warp Stall Sampling (All Samples)")
    reasons = [h for h in header if h.startswith("stall_") and "Not Issued" not in h]
    idx = {h: header.index(h) for h in reasons}
    totals = dict.fromkeys(reasons, 0.0)
    total = 0.0
    per_insn = []
    for r in rows[2:]:
        if len(r) < len(header):
            continue
        try:
            n = float(r[col] or 0)
        except ValueError:
            continue
        total += n
        d = {h: float(r[idx[h]] or 0) for h in reasons}
        for h, v in d.items():
            totals[h] += v
        per_insn.append((n, r[0], r[1], d))
    print(f"{rows[0][1] if len(rows[0]) > 1 else ''}\nsamples {total:.0f}")
    for h, v in sorted(totals.items(), key=lambda x: -x[1])[:10]:
        print(f"  {h:28s} {v:10.0f} {100 * v / max(total, 1):5.1f}%")
    per_insn.sort(key=lambda x: -x[0])
    for n, addr, src, d in per_insn[:top]:
        main2 = sorted(d.items(), key=lambda x: -x[1])[:2]
        why = ", ".join(f"{k[6:]} {v:.0f}" for k, v in main2)
        print(f"{n:9.0f} {addr[-5:]} {src.strip()[:58]:58s} {why}")


if __name__ == "__main__":
    main()
