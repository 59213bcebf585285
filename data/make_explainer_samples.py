"""Build data/samples/remotion_explainer/explainers.jsonl: topic -> a Remotion explainer composition (TSX).

**Every record is written by the project**: the topics, their facts and the compositions come from
the tables below, rendered by one template per scene type. Nothing here is scraped or pretends to be
user data. Deterministic: the same script gives the same bytes (``--check`` compares). Run from the
repository root::

    python3 data/make_explainer_samples.py            # rewrite the file
    python3 data/make_explainer_samples.py --check    # exit 1 when it would change

A composition imports the project's scene kit (``nexus/explainer/remotion/src/kit.tsx``: Title,
Bullets, Equation, BarChart, NumberLine) and Remotion itself; some topics add a scene drawn directly
with ``useCurrentFrame`` and ``interpolate`` (a growing circle, a sweeping line, a square turning), so
the compositions cover both the kit and raw Remotion code. The last ``HELD_OUT`` topics are marked
``"split": "test"``: the evaluator asks for them and checks what the model writes with the real toolchain.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "samples" / "remotion_explainer" / "explainers.jsonl"
HELD_OUT = 8
PROMPT = "Write a Remotion explainer video about {topic}."

# topic, subtitle, three points, equation (or ""), chart (labels, values, unit) or None, number line or None
TOPICS: list[tuple[str, str, list[str], str, tuple | None, tuple | None]] = [
    ("the Pythagorean theorem", "Right triangles", ["a and b are the legs", "c is the hypotenuse",
     "It holds for right angles only"], "a² + b² = c²", None, None),
    ("prime numbers", "Numbers with two divisors", ["A prime has exactly two divisors", "2 is the only even prime",
     "There are infinitely many primes"], "", (["1-10", "11-20", "21-30", "31-40"], [4, 4, 2, 2], ""), None),
    ("the derivative", "Rates of change", ["The slope of the tangent line", "The limit of secant slopes",
     "Zero at a peak or a valley"], "f'(x) = lim (f(x+h) − f(x)) / h", None, None),
    ("the area of a circle", "Why pi r squared", ["Cut the circle into thin wedges",
     "Rearrange them into a near rectangle", "Its sides are pi r and r"], "A = π r²", None, None),
    ("the number e", "Continuous growth", ["About 2.71828", "The limit of (1 + 1/n)^n",
     "e^x is its own derivative"], "e = lim (1 + 1/n)ⁿ", None, (2, 3, 2.718, "e ≈ 2.718")),
    ("binary numbers", "Counting in base two", ["Each digit is a power of two", "1011 in binary is 11",
     "Computers store bits"], "1011₂ = 8 + 2 + 1 = 11", (["2⁰", "2¹", "2²", "2³"], [1, 2, 4, 8], ""), None),
    ("the golden ratio", "A number that keeps showing up", ["About 1.618", "Its square is itself plus one",
     "Ratios of Fibonacci numbers approach it"], "φ = (1 + √5) / 2", None, (1, 2, 1.618, "φ ≈ 1.618")),
    ("Newton's second law", "Force and motion", ["Force equals mass times acceleration",
     "Twice the force, twice the acceleration", "Measured in newtons"], "F = m a", None, None),
    ("the speed of light", "The universe's speed limit", ["About 300,000 km per second",
     "Light from the Sun takes about 8 minutes", "Nothing with mass reaches it"], "c ≈ 3 × 10⁸ m/s",
     (["Sound", "Jet", "Earth orbit", "Light"], [0.34, 0.25, 30, 300000], " km/s"), None),
    ("photosynthesis", "How plants make sugar", ["Light energy is captured by chlorophyll",
     "Water and carbon dioxide go in", "Glucose and oxygen come out"], "6CO₂ + 6H₂O → C₆H₁₂O₆ + 6O₂", None, None),
    ("the water cycle", "Where rain comes from", ["Water evaporates from oceans and lakes",
     "Vapor condenses into clouds", "It falls back as rain or snow"], "", None, None),
    ("compound interest", "Interest on interest", ["Each year adds a share of the balance",
     "Growth speeds up over time", "Doubling time is about 72 divided by the rate"], "A = P (1 + r)ⁿ",
     (["Year 0", "Year 10", "Year 20", "Year 30"], [100, 163, 265, 432], ""), None),
    ("the Fibonacci sequence", "Each number sums the two before", ["It starts 0, 1, 1, 2, 3, 5, 8",
     "It appears in sunflower spirals", "Its ratios approach the golden ratio"], "Fₙ = Fₙ₋₁ + Fₙ₋₂",
     (["F5", "F6", "F7", "F8"], [5, 8, 13, 21], ""), None),
    ("probability", "Measuring chance", ["A probability lies between 0 and 1",
     "A fair coin lands heads half the time", "Independent chances multiply"], "P(A and B) = P(A) · P(B)",
     None, (0, 1, 0.5, "heads: 0.5")),
    ("the mean and the median", "Two kinds of average", ["The mean adds and divides",
     "The median is the middle value", "Outliers pull the mean, not the median"], "mean = (x₁ + … + xₙ) / n",
     (["2", "3", "4", "11"], [2, 3, 4, 11], ""), None),
    ("vectors", "Arrows with length and direction", ["A vector has a size and a direction",
     "Add vectors tip to tail", "Scaling stretches or flips them"], "v + w = (v₁ + w₁, v₂ + w₂)", None, None),
    ("matrix multiplication", "Composing transformations", ["Rows of the first meet columns of the second",
     "Order matters: AB is not BA", "It applies one transformation after another"], "(AB)ᵢⱼ = Σ Aᵢₖ Bₖⱼ",
     None, None),
    ("the sine wave", "Circles in disguise", ["Sine is the height of a point on a turning circle",
     "It repeats every 2π", "Sound and light are waves"], "y = sin(x)", None, (-1, 1, 1, "peak: 1")),
    ("gravity", "Why things fall", ["Every mass attracts every other mass", "Force falls with distance squared",
     "On Earth objects fall at 9.8 m/s²"], "F = G m₁ m₂ / r²", (["Moon", "Mars", "Earth", "Jupiter"],
     [1.6, 3.7, 9.8, 24.8], " m/s²"), None),
    ("the DNA double helix", "The molecule of heredity", ["Two strands wind around each other",
     "A pairs with T, C pairs with G", "The sequence encodes proteins"], "", None, None),
    ("plate tectonics", "Continents on the move", ["Earth's crust is broken into plates",
     "Plates move a few centimeters a year", "Earthquakes happen where they meet"], "", None,
     (0, 10, 2.5, "2.5 cm a year")),
    ("the boiling point of water", "Temperature and pressure", ["Water boils at 100 °C at sea level",
     "Lower pressure lowers the boiling point", "On a high mountain tea brews cooler"], "",
     (["Sea level", "2 km", "5 km", "8.8 km"], [100, 93, 83, 70], " °C"), None),
    ("negative numbers", "Less than nothing", ["They sit left of zero on the number line",
     "Minus times minus is plus", "Temperatures and debts use them"], "(−3) × (−2) = 6", None,
     (-5, 5, -3, "−3")),
    ("fractions", "Parts of a whole", ["The bottom counts equal parts", "The top counts the parts taken",
     "Equal fractions can look different"], "1/2 = 2/4 = 3/6", None, (0, 1, 0.75, "3/4")),
    ("the Big Bang", "How the universe began", ["The universe is about 13.8 billion years old",
     "It has been expanding ever since", "Its afterglow fills the sky as microwaves"], "", None, None),
    ("black holes", "Where light cannot escape", ["Gravity so strong light cannot leave",
     "The edge is the event horizon", "They form when huge stars collapse"], "rₛ = 2GM / c²", None, None),
    ("the periodic table", "Elements in order", ["Elements are ordered by proton count",
     "Columns share chemical behaviour", "There are 118 known elements"], "",
     (["H", "He", "Li", "Be"], [1, 2, 3, 4], " protons"), None),
    ("sorting algorithms", "Putting things in order", ["Bubble sort swaps neighbours",
     "Merge sort splits and merges", "Good sorts take about n log n steps"], "O(n log n)",
     (["n = 10", "n = 100", "n = 1000"], [33, 664, 9966], " steps"), None),
    ("binary search", "Halving the problem", ["Look at the middle of a sorted list",
     "Throw away the half that cannot hold it", "A million items take about 20 steps"], "steps ≈ log₂ n",
     None, (0, 100, 50, "middle")),
    ("the logarithm", "Undoing exponents", ["The log asks which power gives a number",
     "log₁₀ 1000 is 3", "Logs turn products into sums"], "log(ab) = log a + log b", None, None),
    ("the square root of two", "The first irrational number", ["About 1.414",
     "It is the diagonal of a unit square", "No fraction equals it exactly"], "√2 ≈ 1.41421", None,
     (1, 2, 1.414, "√2")),
    ("kinetic energy", "The energy of motion", ["Heavier things carry more of it",
     "Double the speed, four times the energy", "It is measured in joules"], "E = ½ m v²",
     (["1 m/s", "2 m/s", "3 m/s", "4 m/s"], [1, 4, 9, 16], " J"), None),
    ("the human heart", "A pump with four chambers", ["Two atria receive blood",
     "Two ventricles push it out", "It beats about 100,000 times a day"], "", None, None),
    ("supply and demand", "How prices settle", ["Higher prices lower the quantity wanted",
     "Higher prices raise the quantity offered", "The price settles where they meet"], "", None, None),
    ("the Doppler effect", "Why sirens change pitch", ["Waves bunch up ahead of a moving source",
     "They stretch out behind it", "Astronomers use it to measure star speeds"], "f' = f (v / (v − vₛ))",
     None, None),
    ("electric circuits", "Current, voltage, resistance", ["Voltage pushes the current",
     "Resistance holds it back", "Doubling resistance halves the current"], "V = I R", None, None),
    ("the Moon's phases", "Half lit, always", ["The Sun always lights half of the Moon",
     "We see more or less of that half", "A full cycle takes about 29.5 days"], "", None,
     (0, 29.5, 14.8, "full moon")),
    ("exponential growth", "Doubling again and again", ["A fixed share is added each step",
     "Ten doublings make about a thousand", "It starts slow and ends fast"], "N = N₀ · 2ᵗ",
     (["t=0", "t=1", "t=2", "t=3", "t=4"], [1, 2, 4, 8, 16], ""), None),
    ("the triangle angle sum", "Always 180 degrees", ["The three angles of a triangle add up to 180°",
     "An equilateral triangle has three 60° angles", "On a sphere the sum is larger"], "α + β + γ = 180°",
     None, None),
    ("the volume of a sphere", "Four thirds pi r cubed", ["Double the radius, eight times the volume",
     "A sphere fills about half of its cube", "Archimedes found it with cylinders"], "V = 4/3 π r³", None,
     None),
    ("percentages", "Out of one hundred", ["Per cent means per hundred", "25% is one quarter",
     "A 10% rise then a 10% fall leaves less"], "p% of x = p / 100 · x", (["10%", "25%", "50%", "75%"],
     [10, 25, 50, 75], ""), None),
    ("the greenhouse effect", "A blanket of gases", ["Sunlight warms the ground",
     "The ground gives off heat as infrared", "Carbon dioxide and water vapor hold some of it in"], "", None,
     None),
    ("atoms", "The building blocks of matter", ["A nucleus of protons and neutrons",
     "Electrons surround the nucleus", "The proton count sets the element"], "", None, None),
    ("the Monty Hall problem", "Stick or switch?", ["Three doors, one car",
     "The host opens a door with a goat", "Switching wins two times in three"], "P(win by switching) = 2/3",
     (["Stay", "Switch"], [33, 67], "%"), None),
    ("standard deviation", "How spread out data is", ["Small when values sit near the mean",
     "About 68% lie within one deviation", "It is the square root of the variance"], "σ = √(Σ (x − μ)² / n)",
     None, (-3, 3, 1, "1 σ")),
    ("the speed of sound", "How fast a sound travels", ["About 343 m/s in air", "Faster in water and steel",
     "Count seconds after lightning to gauge distance"], "", (["Air", "Water", "Steel"], [343, 1480, 5960],
     " m/s"), None),
    ("Ohm's law", "A line through the origin", ["Current grows in step with voltage",
     "The slope is one over the resistance", "It holds for metals at a steady temperature"], "I = V / R",
     None, None),
    ("the solar system", "The Sun and its planets", ["Eight planets orbit the Sun",
     "The four inner ones are rocky", "Jupiter is the largest"], "", (["Mercury", "Earth", "Jupiter",
     "Neptune"], [0.4, 1, 5.2, 30], " AU"), None),
    ("pi", "The circle constant", ["The ratio of circumference to diameter", "About 3.14159",
     "Its digits never repeat"], "π = C / d", None, (3, 4, 3.14159, "π")),
    ("the immune system", "The body's defenders", ["White blood cells find invaders",
     "Antibodies mark them for removal", "Memory cells remember past infections"], "", None, None),
    ("entropy", "Why things mix", ["Disorder tends to grow in a closed system",
     "Heat flows from hot to cold", "Broken eggs do not reassemble"], "S = k ln W", None, None),
    ("the Celsius and Fahrenheit scales", "Two ways to read a thermometer", ["Water freezes at 0 °C or 32 °F",
     "Water boils at 100 °C or 212 °F", "−40 reads the same on both"], "°F = °C × 9/5 + 32", None,
     (-40, 100, 37, "body: 37 °C")),
    ("the speed of a falling object", "Faster every second", ["Without air a falling object gains 9.8 m/s each second",
     "Air resistance sets a top speed", "Heavy and light objects fall together in a vacuum"], "v = g t",
     (["1 s", "2 s", "3 s"], [9.8, 19.6, 29.4], " m/s"), None),
    ("neural networks", "Layers of simple units", ["Each unit weighs its inputs",
     "Layers pass signals forward", "Training adjusts the weights"], "y = σ(W x + b)", None, None),
    ("the quadratic formula", "Solving ax² + bx + c = 0", ["Any quadratic has at most two roots",
     "The discriminant tells how many", "Completing the square gives the formula"],
     "x = (−b ± √(b² − 4ac)) / 2a", None, None),
    ("the seasons", "Why summer is warm", ["Earth's axis is tilted about 23.4°",
     "Each hemisphere leans toward the Sun in its summer", "Distance from the Sun matters little"], "", None,
     (0, 90, 23.4, "23.4°")),
]

SCENE_SECONDS = {"title": 2, "bullets": 3, "equation": 3, "chart": 3, "line": 3, "raw": 2}
RAW_SCENES = ("circle", "sweep", "square")


def _js(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _raw_scene(kind: str) -> tuple[str, str]:
    """(component definition, its JSX) of a scene drawn with Remotion's own API."""
    if kind == "circle":
        body = ("const Growing: React.FC = () => {\n  const frame = useCurrentFrame();\n"
                "  const size = interpolate(frame, [0, 45], [0, 200], {extrapolateRight: \"clamp\"});\n"
                "  return (\n    <AbsoluteFill style={{justifyContent: \"center\", alignItems: \"center\"}}>\n"
                "      <div style={{width: size, height: size, borderRadius: size / 2, backgroundColor: ACCENT}} />\n"
                "    </AbsoluteFill>\n  );\n};\n")
        return body, "<Growing />"
    if kind == "sweep":
        body = ("const Sweep: React.FC = () => {\n  const frame = useCurrentFrame();\n"
                "  const width = interpolate(frame, [0, 40], [0, 520], {extrapolateRight: \"clamp\"});\n"
                "  return (\n    <AbsoluteFill style={{justifyContent: \"center\", padding: \"0 60px\"}}>\n"
                "      <div style={{width, height: 6, backgroundColor: WARM}} />\n"
                "    </AbsoluteFill>\n  );\n};\n")
        return body, "<Sweep />"
    body = ("const Turning: React.FC = () => {\n  const frame = useCurrentFrame();\n"
            "  const angle = interpolate(frame, [0, 60], [0, 90]);\n"
            "  return (\n    <AbsoluteFill style={{justifyContent: \"center\", alignItems: \"center\"}}>\n"
            "      <div style={{width: 120, height: 120, border: `4px solid ${INK}`,\n"
            "        transform: `rotate(${angle}deg)`}} />\n"
            "    </AbsoluteFill>\n  );\n};\n")
    return body, "<Turning />"


def composition(number: int, topic: str, subtitle: str, points: list[str], equation: str,
                chart: tuple | None, line: tuple | None) -> str:
    """The TSX of one explainer (see the module docstring): a title, then the topic's scenes in an
    order that varies with ``number``."""
    scenes: list[tuple[str, str]] = [("title", f"<Title text={_js(topic[0].upper() + topic[1:])} "
                                               f"subtitle={_js(subtitle)} />")]
    body = [("bullets", f"<Bullets items={{{_js(points)}}} />")]
    if equation:
        body.append(("equation", f"<Equation tex={_js(equation)} caption={_js(points[0])} />"))
    if chart:
        labels, values, unit = chart
        unit_prop = f" unit={_js(unit)}" if unit else ""
        body.append(("chart", f"<BarChart labels={{{_js(labels)}}} values={{{_js(list(values))}}}{unit_prop} />"))
    if line:
        low, high, mark, label = line
        body.append(("line", f"<NumberLine from={{{_number(low)}}} to={{{_number(high)}}} mark={{{_number(mark)}}} "
                             f"label={_js(label)} />"))
    rotate = number % len(body)
    body = body[rotate:] + body[:rotate]
    helpers = ""
    if number % 3 == 0:  # a third of them draw one scene with Remotion's own API
        helpers, jsx = _raw_scene(RAW_SCENES[(number // 3) % len(RAW_SCENES)])
        body.insert(1 if len(body) > 1 else 0, ("raw", jsx))
    scenes += body
    kinds = {kind for kind, _ in body}
    kit = sorted({"Title", "Bullets", *(name for kind, name in (("equation", "Equation"), ("chart", "BarChart"),
                                                                 ("line", "NumberLine")) if kind in kinds)})
    if helpers:
        kit = sorted({*kit, "ACCENT" if "ACCENT" in helpers else "", "WARM" if "WARM" in helpers else "",
                      "INK" if "INK" in helpers else ""} - {""})
    remotion = "AbsoluteFill, Sequence" + (", interpolate, useCurrentFrame" if helpers else "")
    lines = ["import React from \"react\";", f"import {{{remotion}}} from \"remotion\";",
             f"import {{{', '.join(kit)}}} from \"./kit\";", ""]
    start, sequences = 0, []
    for kind, jsx in scenes:
        frames = SCENE_SECONDS[kind] * 30
        where = f" from={{{start}}}" if start else ""
        sequences.append(f"    <Sequence{where} durationInFrames={{{frames}}}>\n      {jsx}\n    </Sequence>")
        start += frames
    lines += [f"export const durationInFrames = {start};", ""]
    if helpers:
        lines += [helpers]
    lines += ["export const Explainer: React.FC = () => (", "  <AbsoluteFill style={{backgroundColor: \"#1c1c28\"}}>",
              *sequences, "  </AbsoluteFill>", ");"]
    return "\n".join(lines) + "\n"


def records() -> list[dict]:
    """One record per topic: ``topic``, ``prompt`` (what the model is asked), ``composition``, ``split``."""
    out = []
    for number, (topic, subtitle, points, equation, chart, line) in enumerate(TOPICS):
        out.append({"topic": topic, "prompt": PROMPT.format(topic=topic),
                    "composition": composition(number, topic, subtitle, points, equation, chart, line),
                    "split": "test" if number >= len(TOPICS) - HELD_OUT else "train",
                    "source": "written by the Nexus project (data/make_explainer_samples.py)"})
    return out


def render() -> str:
    """The file's bytes: one JSON record per line."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the file would change")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        same = OUT.is_file() and OUT.read_text(encoding="utf-8") == text
        print("up to date" if same else f"{OUT}: differs from what the script writes")
        return 0 if same else 1
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(f"{OUT}: {len(TOPICS)} records ({HELD_OUT} held out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
