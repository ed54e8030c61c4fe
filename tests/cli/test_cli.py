"""The `qnet` command line, run in-process through main(argv) and once as a real console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qnet.cli.main import main
from tests.conftest import EXAMPLES

TOKYO = str(EXAMPLES / "tokyo-qkd-network.yaml")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_keyrate_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints a list of {distance_km, rate_per_pulse, rate_bps, mu} for the range given."""
    code, out, _ = run(capsys, "keyrate", "--protocol", "bb84-decoy", "--distance-km", "0:200:5", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["distance_km"] for r in rows] == [float(d) for d in range(0, 201, 5)]
    assert {"distance_km", "rate_per_pulse", "rate_bps", "mu"} <= set(rows[0])
    assert rows[10]["rate_per_pulse"] == pytest.approx(2.226e-4, rel=1e-3)  # 50 km, Lo-Ma-Chen 2005
    assert rows[-1]["rate_per_pulse"] == 0.0 and rows[-1]["mu"] is None


def test_keyrate_param_override(capsys: pytest.CaptureFixture[str]) -> None:
    """--param name=value changes the device; here a better detector gives more key."""
    _, base, _ = run(capsys, "keyrate", "-d", "50", "--json")
    _, better, _ = run(capsys, "keyrate", "-d", "50", "--json", "--param", "detector_efficiency=0.2")
    assert json.loads(better)[0]["rate_per_pulse"] > 3 * json.loads(base)[0]["rate_per_pulse"]


def test_keyrate_several_protocols_and_plot(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Several protocols in one run, with a PNG written."""
    png = tmp_path / "rates.png"
    code, out, err = run(capsys, "keyrate", "-p", "bb84-decoy", "-p", "cv-qkd", "-p", "tf-qkd",
                         "-d", "0:300:50", "--json", "--plot", str(png))
    assert code == 0
    assert {r["protocol"] for r in json.loads(out)} == {"bb84-decoy", "cv-qkd", "tf-qkd"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert "wrote" in err


def test_keyrate_table(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json a table is printed, one row per distance."""
    code, out, _ = run(capsys, "keyrate", "-d", "0,50,100")
    assert code == 0 and "bb84-decoy" in out and "0.0002226" in out


def test_keyrate_spec(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--spec gives every link's rate and every demand's capacity; --plot draws the map."""
    png = tmp_path / "map.png"
    code, out, _ = run(capsys, "keyrate", "--spec", TOKYO, "--json", "--plot", str(png))
    assert code == 0
    plan = json.loads(out)
    assert len(plan["links"]) == 5 and all(lk["rate_bps"] > 0 for lk in plan["links"])
    assert plan["demands"][0]["feasible"] is True
    assert png.exists()


def test_list_params(capsys: pytest.CaptureFixture[str]) -> None:
    """--list-params teaches each parameter's default and range."""
    code, out, _ = run(capsys, "keyrate", "--list-params", "-p", "cv-qkd")
    assert code == 0 and "excess_noise" in out and "reconciliation_efficiency" in out
    assert "referred to the channel input" in out  # the meaning, from the model's docstring


@pytest.mark.parametrize(("args", "code", "message"), [
    (["keyrate", "-p", "bb85"], 1, "unknown protocol 'bb85'"),
    (["keyrate", "--param", "detector_efficency=0.1"], 1, "did you mean 'detector_efficiency'"),
    (["keyrate", "--param", "misalignment=0.9"], 1, "misalignment: must be in [0, 0.5]"),
    (["keyrate", "--param", "nonsense"], 2, "expected NAME=VALUE"),
    (["keyrate", "-d", "0:10"], 2, "START:STOP:STEP"),
    (["keyrate", "-d", "ten"], 2, "must be a number"),
    (["keyrate", "--spec", "no/such/file.yaml"], 1, "file not found"),
    (["frobnicate"], 2, "No such command"),
    (["keyrate", "--spec", TOKYO, "--param", "mu=0.5"], 2, "come from the spec file"),
    (["keyrate", "--param", "mu=0.5", "--param", "mu=0.4"], 2, "mu is given twice"),
    (["keyrate", "--param", "[/x]=1"], 1, "[/x]: unknown parameter"),
    (["keyrate", "-p", "bb84[/x]"], 1, "unknown protocol 'bb84[/x]'"),
    (["keyrate", "--plot", "out.txt"], 2, "ending in .png"),
    (["keyrate", "--plot", "/no/such/dir/x.png"], 2, "does not exist"),
    (["keyrate", "--param", "block_size=1e8"], 1, "set decoy=vacuum+weak"),
])
def test_bad_input_gets_a_clear_error(capsys: pytest.CaptureFixture[str], args: list[str], code: int,
                                      message: str) -> None:
    """Misuse exits non-zero with a message naming what is wrong, and no traceback."""
    got, out, err = run(capsys, *args)
    assert got == code
    assert message in out + err
    assert "Traceback" not in out + err


def test_decoy_none_and_auto_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    """`decoy=none` is the choice "none" (GLLP without decoys); `mu=auto` leaves mu to the optimiser."""
    code, out, _ = run(capsys, "keyrate", "-d", "30", "--json", "--param", "decoy=none", "--param", "mu=auto")
    assert code == 0
    row = json.loads(out)[0]
    assert 0 < row["rate_per_pulse"] < 1e-4 and row["mu"] < 0.1  # no decoys: weak signals, little key


def test_json_is_strict(capsys: pytest.CaptureFixture[str]) -> None:
    """--json output is RFC 8259 JSON: the infinite PLOB bound at 0 km is null, not Infinity."""
    code, out, _ = run(capsys, "keyrate", "-d", "0", "--json")
    assert code == 0 and "Infinity" not in out
    assert json.loads(out, parse_constant=lambda c: pytest.fail(f"non-standard {c}"))[0]["bound"] is None


def test_markup_in_user_strings_is_printed_verbatim(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Names that look like rich markup are shown as written, not interpreted (nor crash)."""
    spec = tmp_path / "[bold]net.yaml"
    spec.write_text("name: '[/x]'\nnodes: [{name: A}, {name: B}]\nlinks: [{endpoints: [A, B], length_km: 10}]\n")
    code, out, _ = run(capsys, "validate", str(spec))
    assert code == 0 and "[bold]net.yaml" in out and "'[/x]'" in out
    code, out, _ = run(capsys, "keyrate", "--spec", str(spec))
    assert code == 0 and "A-B" in out
    spec.write_text("name: x\nnodes: [{name: '[/a]'}, {name: '[red]B'}]\n")  # a name is no identity: refused
    code, _, err = run(capsys, "validate", str(spec))
    assert code == 1 and "(got '[/a]')" in err and "(got '[red]B')" in err


def test_validate_ok_and_broken(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """validate exits 0 on a good spec and 1 with every problem on a bad one."""
    assert run(capsys, "validate", TOKYO)[0] == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnodes: [{name: A}]\nlinks: [{endpoints: [A, B], length_km: -1}]\n")
    code, out, err = run(capsys, "validate", str(bad))
    assert code == 1
    assert "links[0].length_km: must be > 0" in err
    assert "links[0].endpoints[1]: unknown node 'B'" in err
    assert "Traceback" not in out + err


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the version; keyrate --help shows examples."""
    assert run(capsys, "--version")[1].startswith("qnet ")
    code, out, _ = run(capsys, "keyrate", "--help")
    assert code == 0 and "--distance-km" in out and "Examples" in out


def test_console_script_runs() -> None:
    """The installed `qnet` script runs as a real process and exits 1 on a bad spec."""
    exe = shutil.which("qnet") or str(Path(sys.executable).parent / "qnet")
    done = subprocess.run([exe, "validate", TOKYO], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([exe, "validate", "/nonexistent.yaml"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "file not found" in done.stderr


def test_link_simulate_reports_the_chain(capsys: pytest.CaptureFixture[str]) -> None:
    """`qnet link simulate --json` runs photons through the chain and reports every figure."""
    code, out, _ = run(capsys, "link", "simulate", "-d", "50", "--pulses", "1e9", "--json", "--seed", "3")
    assert code == 0
    r = json.loads(out)
    assert r["final_bits"] > 0 and r["sifted_bits"] > r["final_bits"]
    assert 0.02 < r["qber"] < 0.05 and 1.0 < r["ec_efficiency"] < 1.2
    assert r["secret_fraction"] == pytest.approx(r["analytic_finite_key_fraction"], rel=0.15)


def test_link_simulate_with_eve_makes_no_key(capsys: pytest.CaptureFixture[str]) -> None:
    """Intercept-resend on every pulse: QBER about 25 %, no key, and the table says why."""
    code, out, _ = run(capsys, "link", "simulate", "-d", "25", "--eve", "intercept-resend")
    assert code == 0
    assert "QBER" in out and "above 11%" in out


@pytest.mark.parametrize(("args", "message"), [
    (["link", "simulate", "--eve", "mitm"], "must be one of intercept-resend, pns"),
    (["link", "simulate", "-p", "tf-qkd"], "photon-level simulation exists for bb84-decoy and cv-qkd"),
    (["link", "simulate", "--reconciler", "ldpc"], "must be one of cascade, polar"),
    (["link", "simulate", "--param", "detector_efficiency=2"], "detector_efficiency: must be in (0, 1]"),
    (["link", "simulate", "--param", "nu=0.1"], "chooses its decoys itself"),
    (["link", "simulate", "-n", "inf"], "must be a finite number"),
    (["link", "simulate", "-d", "0", "-n", "1e12", "--block-pulses", "1e12"], "use --block-pulses"),
    (["link", "simulate", "--eve", "pns", "--eve-fraction", "0.5"], "intercept-resend only"),
    (["link", "simulate", "-p", "cv-qkd", "-n", "5"], "at least 10 symbols"),
])
def test_link_simulate_bad_input(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    """Bad options are named, without a traceback."""
    code, out, err = run(capsys, *args)
    assert code != 0 and message in out + err and "Traceback" not in out + err
