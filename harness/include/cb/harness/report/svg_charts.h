// Small, dependency-free SVG chart writers for the HTML report: an XY chart (linear or log axes,
// lines and/or markers, legend) and a "measured vs threshold" bar chart with one scale per group.
// Output is deterministic: the same input gives the same bytes (fixed number formatting, no
// randomness, no clocks). Every piece of text is XML-escaped here, so callers pass raw strings.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace cb::harness::svg {

// XML/HTML text and attribute escaping (& < > " ').
std::string escape(const std::string& s);
// Compact, locale-independent number for labels ("0.82", "2200", "1.5e-05"); "n/a" for NaN/inf.
std::string fmt_num(double v);
// Axis tick label: SI suffixes for large values ("10k", "2M", "1G").
std::string fmt_tick(double v);

// "Nice" tick positions (1, 2, 5 x 10^k steps) covering [lo, hi], about `target` of them.
std::vector<double> linear_ticks(double lo, double hi, int target = 6);
// Decade ticks (and 2, 5 multiples when the range spans less than ~2 decades) in [lo, hi], lo > 0.
std::vector<double> log_ticks(double lo, double hi);

enum class Marker { None, Circle, Square, Triangle, Diamond, Cross };

// Colors for runs / series (color-blind friendly, Okabe-Ito), and the marker for series index i.
const std::string& palette(size_t i);
Marker marker_for(size_t i);

struct Point {
  double x = 0, y = 0;
  std::string tip;  // tooltip (<title>) for this point; empty: none
};

struct Series {
  std::string name;  // legend text
  std::vector<Point> points;
  std::string color = "#0072B2";
  bool line = true;          // connect the points
  bool step = false;         // draw the line as a step function (for CDFs)
  std::string dash;          // stroke-dasharray, e.g. "6 3"; empty: solid
  Marker marker = Marker::None;
};

struct Axis {
  std::string label;
  bool log = false;
  std::optional<double> min, max;  // automatic from the data when absent
};

struct XYChart {
  std::string id;     // element id, e.g. "chart-roofline"
  std::string title;  // drawn above the plot and used as the accessible name
  Axis x, y;
  std::vector<Series> series;
  int width = 1040, height = 420;
  std::string note;   // small text under the plot (e.g. "3 points with zero intensity not drawn")
};

// Renders an <svg> element. Points that cannot be drawn (non-finite, or <= 0 on a log axis) are
// dropped; a chart with nothing to draw says so inside the frame instead of drawing empty axes.
std::string render_xy(const XYChart& c);

struct Bar {
  std::string label;      // row label inside a group (e.g. run name); may be empty for single runs
  double value = 0;       // the measured value
  std::string color;      // bar color (verdict)
  std::string text;       // right-hand annotation, e.g. "0.61  FAIL"
};

struct BarGroup {
  std::string label;                  // group label (claim id)
  std::string tip;                    // tooltip for the group (claim text)
  std::optional<double> threshold;    // tick drawn across the group's bars
  std::string threshold_text;         // e.g. ">= 0.82"
  std::vector<Bar> bars;
};

struct LegendItem {
  std::string text;
  std::string color;
};

struct BarChart {
  std::string id;
  std::string title;
  std::string axis_label;  // under the plot, e.g. "measured (bar) vs threshold (tick); each row has its own scale"
  std::vector<BarGroup> groups;
  std::vector<LegendItem> legend;
  int width = 1040;
};

// Horizontal bars, one scale per group spanning [min(0, values, threshold), max(0, values, threshold)]
// so claims with different units can share a chart; the scale ends are labelled under each group.
std::string render_bars(const BarChart& c);

}  // namespace cb::harness::svg
