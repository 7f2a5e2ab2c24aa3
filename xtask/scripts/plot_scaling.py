"""Draws target/bench/scaling.png from target/bench/datapath.json (written by the datapath
benchmark): ns/packet against services, backends and flow-table occupancy, with the floor."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src, dst = sys.argv[1], sys.argv[2]
data = json.load(open(src))
floor = data.get("per_packet_ns", {}).get("floor")
axes = [("services", "services"), ("backends", "backends"), ("flow_table_pct", "flow table occupancy (%)")]
fig, plots = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
for ax, (key, label) in zip(plots, axes):
    rows = [r for r in data.get("scaling", []) if r["axis"] == key]
    xs = [str(r["x"]) for r in rows]
    ax.plot(xs, [r["established"] for r in rows], marker="o", label="established flow")
    ax.plot(xs, [r["new"] for r in rows], marker="s", label="new flow")
    if floor:
        ax.axhline(floor, color="grey", linestyle="--", label="floor (MAC swap)")
    ax.set_xlabel(label)
    ax.grid(alpha=0.3)
plots[0].set_ylabel("ns per packet")
plots[0].legend()
fig.suptitle("fj-lb per-packet cost as the configuration grows (BPF_PROG_TEST_RUN)")
fig.tight_layout()
fig.savefig(dst, dpi=100)
