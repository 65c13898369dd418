"""BFCL function-calling samples rendered as OpenAI-style agent trajectories, plus planted defects.

The questions and ground-truth calls are real (the BFCL slice bundled in ``agentsynth``); the tool
results are short, plausible values (computed where the call is arithmetic), since BFCL ships no
executions. The degraded copies reproduce the failure modes MIRA's introduction names, so a user
can check that selection rejects them: every record carries ``demo_perturbation`` (None = real).
"""

from __future__ import annotations

import json
import random
from importlib.util import find_spec
from pathlib import Path
from typing import Any

PERTURBATIONS = ("concatenated_json", "malformed_json", "repeated_failing_call",
                 "wrong_function_name", "invented_result")

# Tool results and the final answer built on them, per BFCL case id. Arithmetic is exact;
# the lookups (weather, prices, history) are plausible stand-ins for a real service.
RESULTS: dict[str, tuple[dict[str, Any], str]] = {
    "simple_python_0": ({"area": 25.0, "unit": "square units"}, "The triangle's area is 25 square units."),
    "simple_python_1": ({"result": 120}, "5! = 120."),
    "simple_python_2": ({"result": 6.4031}, "The hypotenuse is about 6.40 (sqrt(4^2 + 5^2) = sqrt(41))."),
    "simple_python_3": ({"roots": [2.0, 1.0]}, "The roots of x^2 - 3x + 2 = 0 are x = 2 and x = 1."),
    "simple_python_4": ({"roots": ["-1.5+0.5j", "-1.5-0.5j"]},
                        "The discriminant is negative (36 - 40 = -4), so the roots are complex: "
                        "-1.5 + 0.5i and -1.5 - 0.5i."),
    "simple_python_5": ({"roots": [4.0, -0.3333]}, "The roots are x = 4 and x = -1/3."),
    "simple_python_6": ({"roots": [-1.0, -1.5]}, "The roots are x = -1 and x = -1.5."),
    "simple_python_7": ({"circumference": 25.1327, "unit": "inches"},
                        "The circumference is about 25.13 inches (2 * pi * 4)."),
    "simple_python_8": ({"area": 314.1593, "units": "square meters"},
                        "The area is about 314.16 square meters (pi * 10^2)."),
    "simple_python_9": ({"area": 78.5398, "unit": "square units"}, "The circle's area is about 78.54 square units."),
    "simple_python_10": ({"area": 30.0, "unit": "cm^2"}, "The right triangle's area is 30 cm^2 (6 * 10 / 2)."),
    "simple_python_11": ({"area": 25.0}, "The area is 25 square units."),
    "simple_python_12": ({"circumference": 18.8496, "units": "cm"}, "The circumference is about 18.85 cm."),
    "simple_python_13": ({"area": 8.6667}, "The area under y = x^2 from 1 to 3 is about 8.67 (exactly 26/3)."),
    "simple_python_14": ({"derivative": "6x + 2", "value_at_x": 2.0},
                         "The derivative is 6x + 2; at x = 0 it equals 2."),
    "simple_python_15": ({"area": 16.25}, "Simpson's rule gives 16.25 for the integral of x^3 from -2 to 3."),
    "simple_python_16": ({"derivative": "4x", "value": 4.0}, "The derivative of 2x^2 is 4x, which is 4 at x = 1."),
    "simple_python_17": ({"factors": "2 x 3^2 x 5^2"}, "450 = 2 x 3^2 x 5^2."),
    "simple_python_18": ({"factors": [2, 2, 2, 2, 2, 2, 3, 643]}, "123456 = 2^6 x 3 x 643."),
    "simple_python_19": ({"gcd": 10}, "The greatest common divisor of 40 and 50 is 10."),
    "simple_python_20": ({"hcf": 12}, "The highest common factor of 36 and 24 is 12."),
    "simple_python_21": ({"gcd": 12}, "The GCD of 36 and 48 is 12."),
    "simple_python_22": ({"gcd": 3}, "The GCD of 12 and 15 is 3."),
    "simple_python_23": ({"factors": {"2": 2, "3": 1, "5": 1}}, "60 = 2^2 x 3 x 5, i.e. {2: 2, 3: 1, 5: 1}."),
    "simple_python_24": ({"gcd": 6}, "The GCD of 12 and 18 is 6."),
    "multiple_0": ({"area": 6.0, "perimeter": 12.0, "angles": [36.87, 53.13, 90.0]},
                   "It is a right triangle: area 6, perimeter 12, angles about 36.87, 53.13 and 90 degrees."),
    "multiple_1": ({"area": 6.0}, "By Heron's formula the area is 6."),
    "multiple_2": ({"country": "Brazil", "capital": "Brasilia"}, "The capital of Brazil is Brasilia."),
    "multiple_3": ({"distance": 2.8284}, "The distance between A(3,4) and B(1,2) is about 2.83 (2 * sqrt(2))."),
    "multiple_4": ({"displacement": 225.0, "unit": "m"}, "The car covers 225 m (20 * 5 + 0.5 * 10 * 5^2)."),
    "multiple_5": ({"date": "2019-12-13", "wind_speed_kmh": 14.8, "temperature_c": 6.1},
                   "On 2019-12-13 at that location the wind speed was about 14.8 km/h "
                   "and the temperature about 6.1 C."),
    "multiple_6": ({"capacitance_F": 8.854e-09}, "The capacitance is about 8.85 nF (K * eps0 * A / d)."),
    "multiple_7": ({"species": "deer", "growth_rate_pct_per_year": 2.4,
                    "woodland_impact": "moderate browsing of saplings"},
                   "The assessment shows deer numbers growing about 2.4% a year over the decade, "
                   "with moderate browsing of young trees."),
    "multiple_8": ({"matches": [{"id": "SD-4471", "bedrooms": 3, "price": 389000},
                                {"id": "SD-5120", "bedrooms": 3, "price": 342500}]},
                   "Two 3-bedroom villas match: SD-4471 at $389,000 and SD-5120 at $342,500."),
    "multiple_9": ({"average": 84.0}, "John's average grade is 84."),
    "multiple_10": ({"status": "ok", "removed_columns": ["email", "ssn"]},
                    "The email and ssn columns were removed from employees.personal_data."),
    "multiple_11": ({"roots": [1.0, -5.0]}, "The roots of 5x^2 + 20x - 25 = 0 are x = 1 and x = -5."),
    "multiple_12": ({"yoy_growth_rate": 0.2}, "Tech Inc grew revenue 20% year over year from 2019 to 2020."),
    "multiple_13": ({"forecast_revenue": 1100000.0, "currency": "USD"},
                    "With 10% more units of product A at the same price, XYZ's forecast revenue is $1.1M."),
    "multiple_14": ({"depreciated_value": 171746.81},
                    "After 5 years at 3% a year the property is worth about $171,747."),
    "multiple_15": ({"potential_kwh": 167500.0, "month": "December"},
                    "The solar farm's estimated December potential is about 167,500 kWh."),
    "multiple_16": ({"effective_population_size": 500}, "An effective population size of about 500 is needed."),
    "multiple_17": ({"rate": 1.137, "date": "2022-01-01"}, "On 2022-01-01, 1 EUR was about 1.137 USD."),
    "multiple_18": ({"participants": ["Soviet Union", "Germany", "Romania", "Italy", "Hungary"],
                     "location": "Stalingrad, USSR"},
                    "The battle was fought at Stalingrad between the Soviet Union and Germany with its Axis allies."),
    "multiple_19": ({"schisms": ["Schism of 431 (Nestorian)", "Schism of 451 (Chalcedonian)",
                                 "East-West Schism of 1054"]},
                    "The three are the Nestorian schism (431), the Chalcedonian schism (451) "
                    "and the East-West Schism (1054)."),
    "multiple_20": ({"price_usd": 2700}, "A 3-foot marble sculpture of medium complexity costs about $2,700."),
    "multiple_21": ({"file": "sound_440Hz_5s.wav", "wave_type": "sine"},
                    "I used generate_sound_wave(frequency=440, duration=5); it wrote sound_440Hz_5s.wav (sine)."),
    "multiple_22": ({"player": "Wilt Chamberlain", "points": 100, "date": "1962-03-02"},
                    "The record is 100 points, by Wilt Chamberlain on March 2, 1962."),
    "multiple_23": ({"points_per_game": 25.7, "assists": 8.3, "minutes_per_game": 35.3},
                    "LeBron James averages 25.7 points, 8.3 assists and 35.3 minutes per game."),
    "multiple_24": ({"route": "M1, A1(M)", "distance_km": 650, "duration_h": 7.2},
                    "The fastest route is via the M1 and A1(M): about 650 km, roughly 7 hours by car."),
}
SYSTEM = "You are a helpful assistant with access to these functions. Call a function when it helps answer.\n"
_TYPES = {"dict": "object", "float": "number", "tuple": "array", "any": "string"}


def bfcl_files() -> list[tuple[Path, Path]]:
    """(questions, answers) file pairs of the BFCL slice bundled in agentsynth; [] if not installed."""
    spec = find_spec("agentsynth")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return []
    data = Path(next(iter(spec.submodule_search_locations))) / "benchmarks" / "data"
    pairs = [(q, q.with_name(q.name.replace(".questions.", ".answers.")))
             for q in sorted(data.glob("bfcl_*.questions.jsonl"))]
    return [(q, a) for q, a in pairs if a.exists()]


def _schema(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (_TYPES.get(v, v) if k == "type" and isinstance(v, str) else _schema(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_schema(v) for v in value]
    return value


def _first_allowed(allowed: Any) -> Any:
    """BFCL lists the accepted values of an argument; a nested dict lists them per key."""
    value = allowed[0] if isinstance(allowed, list) and allowed else allowed
    if isinstance(value, dict):
        return {k: _first_allowed(v) for k, v in value.items()}
    return value


def _arguments(spec: dict[str, Any]) -> dict[str, Any]:
    # "" as first allowed value means "may be omitted": a real caller would leave it out.
    return {k: _first_allowed(v) for k, v in spec.items() if _first_allowed(v) != ""}


def _call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def trajectory(question: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any] | None:
    """One real BFCL case as a complete, correct agent trajectory (None if it has no ground truth)."""
    truth = answer.get("ground_truth") or []
    if not truth or not isinstance(truth[0], dict) or not truth[0]:
        return None
    name, spec = next(iter(truth[0].items()))
    turns = question["question"]
    if turns and isinstance(turns[0], list):  # BFCL nests the turns of the first (only) conversation
        turns = turns[0]
    user = next(str(m["content"]) for m in turns if m.get("role") == "user")
    tools: list[dict[str, Any]] = [
        {"type": "function", "function": {"name": f["name"], "description": f.get("description", ""),
                                          "parameters": _schema(f.get("parameters") or {})}}
        for f in question.get("function") or []]
    listing = "\n".join(f"- {t['function']['name']}: {t['function']['description']}" for t in tools)
    result, final = RESULTS.get(question["id"], ({"status": "ok"}, f"The call to {name} completed."))
    arguments = json.dumps(_arguments(spec if isinstance(spec, dict) else {}), ensure_ascii=False)
    call_id = "call_" + question["id"].replace("_", "")
    messages = [
        {"role": "system", "content": SYSTEM + listing},
        {"role": "user", "content": user},
        {"role": "assistant", "content": None, "tool_calls": [_call(call_id, name, arguments)]},
        {"role": "tool", "tool_call_id": call_id, "name": name, "content": json.dumps(result, ensure_ascii=False)},
        {"role": "assistant", "content": final},
    ]
    return {"id": f"bfcl_agent/{question['id']}", "bfcl_id": question["id"], "messages": messages,
            "tools": tools, "demo_perturbation": None}


def perturb(record: dict[str, Any], kind: str, rng: random.Random) -> dict[str, Any]:
    """A degraded copy of a good trajectory showing one named failure mode."""
    messages = json.loads(json.dumps(record["messages"]))  # deep copy
    system, user, call_msg, tool_msg, final = messages
    call = call_msg["tool_calls"][0]
    name, args = call["function"]["name"], call["function"]["arguments"]
    error = json.dumps({"error": "invalid arguments: could not parse JSON"})
    if kind == "concatenated_json":
        # Two JSON objects glued together: a typical streaming/decoding bug in generated traces.
        call["function"]["arguments"] = args + args
        tool_msg["content"] = error
    elif kind == "malformed_json":
        call["function"]["arguments"] = args[: max(1, len(args) - rng.randint(2, 6))].replace('"', "'", 1)
        tool_msg["content"] = error
    elif kind == "repeated_failing_call":
        call["function"]["arguments"] = args[:-1] + ", }"
        tool_msg["content"] = error
        repeats = []
        for i in range(rng.randint(2, 3)):  # the same broken call again, unchanged
            cid = f"{call['id']}r{i + 1}"
            repeats += [{"role": "assistant", "content": None, "tool_calls": [{**call, "id": cid}]},
                        {"role": "tool", "tool_call_id": cid, "name": name, "content": error}]
        messages = [system, user, call_msg, tool_msg, *repeats, final]
    elif kind == "wrong_function_name":
        wrong = rng.choice([name.replace(".", "_") + "_v2", name.split(".")[-1] + "Tool", "get_" + name.split(".")[-1]])
        call["function"]["name"] = wrong
        tool_msg["name"] = wrong
        tool_msg["content"] = json.dumps({"error": f"unknown function {wrong!r}"})
    elif kind == "invented_result":
        # The tool fails, yet the answer reports a confident result that appears nowhere.
        tool_msg["content"] = json.dumps({"error": "service unavailable (HTTP 503)"})
        invented = rng.randint(7, 9999)
        final["content"] = rng.choice(["Done! ", "Sure. ", ""]) + f"The answer is {invented}, as confirmed by {name}."
    else:
        raise ValueError(f"unknown perturbation {kind!r}")
    return {**record, "id": f"{record['id']}/{kind}", "messages": messages, "demo_perturbation": kind}


def build_records(n_good: int, n_perturbed: int, rng: random.Random) -> list[dict[str, Any]]:
    """`n_good` real trajectories and `n_perturbed` degraded copies (kinds cycle, so all appear)."""
    good: list[dict[str, Any]] = []
    for questions, answers in bfcl_files():
        answer_by_id = {}
        for line in answers.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                answer_by_id[row["id"]] = row
        for line in questions.read_text(encoding="utf-8").splitlines():
            if line.strip():
                question = json.loads(line)
                record = trajectory(question, answer_by_id.get(question["id"], {}))
                if record:
                    good.append(record)
    good.sort(key=lambda r: r["id"])
    chosen = sorted(rng.sample(good, min(n_good, len(good))), key=lambda r: r["id"])
    bases = sorted(rng.sample(good, min(n_perturbed, len(good))), key=lambda r: r["id"])
    offset = rng.randrange(len(PERTURBATIONS))
    perturbed = [perturb(base, PERTURBATIONS[(i + offset) % len(PERTURBATIONS)], rng) for i, base in enumerate(bases)]
    return chosen + perturbed
