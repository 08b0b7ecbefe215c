#!/usr/bin/env python3
"""Per-kernel GPU time from an Nsight Compute CSV (ncu --metrics gpu__time_duration.sum --csv
--page raw ...): kernels grouped by name (template arguments dropped), total time, launches, share.
  python3 bench/ncu_breakdown.py ncu.csv [top]"""
import csv, re, sys
from collections import defaultdict

rows = list(csv.reader(open(sys.argv[1], errors="replace")))
hdr = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
h = rows[hdr]
kn, tm = h.index("Kernel Name"), h.index("gpu__time_duration.sum")
unit = rows[hdr + 1][tm] if len(rows) > hdr + 1 else ""
tot, cnt = defaultdict(float), defaultdict(int)
for r in rows[hdr + 2:]:
    if len(r) <= max(kn, tm) or not r[tm].replace(".", "", 1).replace(",", "").isdigit():
        continue
    name = re.sub(r"<.*", "", r[kn]).replace("void ", "").split("(")[0]
    tot[name] += float(r[tm].replace(",", ""))
    cnt[name] += 1
s = sum(tot.values()) or 1.0
scale = {"nsecond": 1e-6, "usecond": 1e-3, "msecond": 1.0}.get(unit, 1e-6)
print(f"{'kernel':48s} {'ms':>10s} {'launches':>9s} {'share':>7s}")
for name, t in sorted(tot.items(), key=lambda x: -x[1])[: int(sys.argv[2]) if len(sys.argv) > 2 else 30]:
    print(f"{name[:48]:48s} {t * scale:10.3f} {cnt[name]:9d} {100 * t / s:6.1f}%")
print(f"{'total':48s} {s * scale:10.3f} {sum(cnt.values()):9d}")
