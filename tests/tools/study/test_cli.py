"""``gridwarden study`` end to end, through a tiny argparse tree as the main CLI has."""

import argparse
import csv

import pytest

from tools.study.cli import register_study


def _main(argv):
    parser = argparse.ArgumentParser(prog="gridwarden")
    sub = parser.add_subparsers(dest="command", required=True)
    register_study(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_example_writes_csv_png_and_prints_the_table(tmp_path, capsys):
    code = _main(["study", "--example", "--out", str(tmp_path)])
    assert code == 0
    rows = _rows(tmp_path / "summary.csv")
    assert [r["scheme"] for r in rows] == ["LMC", "CLM"]
    lmc, clm = (float(r["unmet_pct"]) for r in rows)
    assert 0.0 <= lmc < clm  # report 4.3.2.1 on the example site
    pngs = sorted(tmp_path.glob("*.png"))
    assert len(pngs) == 2 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert (tmp_path / "loading.csv").exists() and (tmp_path / "demand.csv").exists()
    assert len(_rows(tmp_path / "events.csv")) == sum(int(r["curtailment_events"]) for r in rows)
    out = capsys.readouterr().out
    table = [line.split() for line in out.splitlines()]
    clm_line = next(t for t in table if "CLM" in t)
    assert f"{float(rows[1]['unmet_pct']):.2f}" in clm_line


def test_example_is_reproducible(tmp_path):
    for d in ("a", "b"):
        assert (
            _main(
                [
                    "study",
                    "--example",
                    "--out",
                    str(tmp_path / d),
                    "--no-plots",
                    "--no-timeseries",
                    "--seed",
                    "4",
                ]
            )
            == 0
        )
    assert (tmp_path / "a" / "summary.csv").read_text() == (
        tmp_path / "b" / "summary.csv"
    ).read_text()


def test_device_config_with_csv_inputs(tmp_path, capsys):
    # config/lmc.toml: 400 A threshold = 276 kW at 230 V; sf 0.85, margin 10 A = 6.9 kW
    load = tmp_path / "load.csv"
    dem = tmp_path / "dem.csv"
    times = [f"2025-01-06T{h:02d}:{m:02d}" for h in range(24) for m in (0, 30)]
    load.write_text(
        "timestamp,lv_board\n"
        + "".join(f"{t},{0.2 if i < 30 else 0.26}\n" for i, t in enumerate(times))
    )
    dem.write_text("timestamp,bay\n" + "".join(f"{t},100\n" for t in times))
    code = _main(
        [
            "study",
            "--config",
            "config/lmc.toml",
            "--loading",
            str(load),
            "--loading-unit",
            "MW",
            "--demand",
            str(dem),
            "--out",
            str(tmp_path / "o"),
            "--no-plots",
        ]
    )
    assert code == 0
    (row,) = _rows(tmp_path / "o" / "summary.csv")
    # headroom (276 - 6.9 - 200) / 0.85 = 81.3 kW until 15:00, then (... - 260) = 10.7 kW
    unmet = 30 * (100 - (276 - 6.9 - 200) / 0.85) + 18 * (100 - (276 - 6.9 - 260) / 0.85)
    expected = 100 * unmet / (48 * 100)
    assert float(row["unmet_pct"]) == pytest.approx(expected, abs=1e-3)


def test_bad_csv_gives_one_line_naming_file_and_line(tmp_path, capsys):
    bad = tmp_path / "load.csv"
    bad.write_text("timestamp,x\n2025-01-01T00:00,1\n2025-01-01T00:30,oops\n")
    code = _main(
        [
            "study",
            "--scheme",
            "CLM",
            "--limit",
            "100",
            "--site-max-kw",
            "50",
            "--loading",
            str(bad),
            "--synthetic",
            "destination",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert f"{bad}:3:" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_missing_inputs_are_refused_without_traceback(tmp_path, capsys):
    assert _main(["study", "--out", str(tmp_path)]) == 2
    assert _main(["study", "--config", str(tmp_path / "nope.toml"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "nope.toml" in err


def test_cmc_from_the_command_line(tmp_path):
    times = [f"2025-01-06T{h:02d}:{m:02d}" for h in range(24) for m in (0, 30)]
    (tmp_path / "l.csv").write_text("t,feeder\n" + "".join(f"{t},70\n" for t in times))
    (tmp_path / "d.csv").write_text("t,a,b\n" + "".join(f"{t},40,20\n" for t in times))
    (tmp_path / "sf.csv").write_text("constraint,a,b\nfeeder,1,1\n")
    code = _main(
        [
            "study",
            "--scheme",
            "CMC",
            "--site-max-kw",
            "50",
            "--loading",
            str(tmp_path / "l.csv"),
            "--demand",
            str(tmp_path / "d.csv"),
            "--cmc-limits",
            "feeder=100",
            "--sensitivities",
            str(tmp_path / "sf.csv"),
            "--out",
            str(tmp_path / "o"),
            "--no-plots",
        ]
    )
    assert code == 0
    rows = _rows(tmp_path / "o" / "summary.csv")
    assert [(r["site"], float(r["unmet_pct"])) for r in rows] == [("a", 50.0), ("b", 50.0)]


def test_sweep_from_the_command_line(tmp_path, capsys):
    code = _main(
        [
            "study",
            "--example",
            "--sweep",
            "--sweep-points",
            "1",
            "--out",
            str(tmp_path),
            "--no-timeseries",
        ]
    )
    assert code == 0
    ranges = _rows(tmp_path / "sweep_ranges.csv")
    assert len(ranges) == 18
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_registering_the_subcommand_needs_no_numpy():
    # the device's `gridwarden` must start without the study's optional extras
    import subprocess
    import sys

    from tools.study import cli, synthetic

    assert cli.SITE_TYPES == synthetic.SITE_TYPES
    check = (
        "import sys, argparse\n"
        "from tools.study.cli import register_study\n"
        "register_study(argparse.ArgumentParser().add_subparsers())\n"
        "sys.exit(1 if 'numpy' in sys.modules or 'matplotlib' in sys.modules else 0)\n"
    )
    assert subprocess.run([sys.executable, "-c", check], check=False).returncode == 0


def test_shipped_cmc_example_lifo_protects_the_first_connected(tmp_path):
    ex = "tools/study/examples/"
    unmet = {}
    for policy in ("pro-rata", "lifo"):
        out = tmp_path / policy
        code = _main(
            [
                "study",
                "--scheme",
                "CMC",
                "--site-max-kw",
                "88",
                "--fallback-kw",
                "11",
                "--loading",
                ex + "cmc_loading.csv",
                "--demand",
                ex + "cmc_demand.csv",
                "--sensitivities",
                ex + "cmc_sensitivities.csv",
                "--cmc-limits",
                "primary_11kv=420,secondary_lv=240",
                "--cmc-policy",
                policy,
                "--out",
                str(out),
                "--no-plots",
                "--no-timeseries",
            ]
        )
        assert code == 0
        unmet[policy] = {r["site"]: float(r["unmet_pct"]) for r in _rows(out / "summary.csv")}
    assert unmet["pro-rata"]["hoole_bay7"] > 0  # the constraints do bind
    assert unmet["lifo"]["hoole_bay7"] < unmet["pro-rata"]["hoole_bay7"]
    assert unmet["lifo"]["depot"] > unmet["pro-rata"]["depot"]
