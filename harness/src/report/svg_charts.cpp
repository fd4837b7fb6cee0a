#include "cb/harness/report/svg_charts.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace cb::harness::svg {

namespace {

constexpr const char* kFont = "font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif\"";
constexpr double kCharW = 6.6;  // rough width of one character at font-size 12, for layout decisions

std::string fixed1(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return std::string(buf) == "-0.0" ? "0.0" : buf;
}

// Shortens text to about `max_px` pixels, keeping the full text for the tooltip.
std::string clip_text(const std::string& s, double max_px) {
  const size_t max_chars = static_cast<size_t>(std::max(4.0, max_px / kCharW));
  if (s.size() <= max_chars) return s;
  return s.substr(0, max_chars - 1) + "\xE2\x80\xA6";  // ellipsis
}

std::string text_el(double x, double y, const std::string& s, const std::string& attrs = "") {
  return "<text x=\"" + fixed1(x) + "\" y=\"" + fixed1(y) + "\"" + (attrs.empty() ? "" : " " + attrs) + ">" +
         escape(s) + "</text>\n";
}

std::string marker_el(Marker m, double x, double y, const std::string& color, double r = 4.0) {
  const std::string X = fixed1(x), Y = fixed1(y);
  const std::string fill = " fill=\"" + color + "\" stroke=\"#ffffff\" stroke-width=\"0.8\"";
  switch (m) {
    case Marker::None: return "";
    case Marker::Circle: return "<circle cx=\"" + X + "\" cy=\"" + Y + "\" r=\"" + fixed1(r) + "\"" + fill + "/>";
    case Marker::Square:
      return "<rect x=\"" + fixed1(x - r) + "\" y=\"" + fixed1(y - r) + "\" width=\"" + fixed1(2 * r) + "\" height=\"" +
             fixed1(2 * r) + "\"" + fill + "/>";
    case Marker::Triangle:
      return "<path d=\"M" + X + " " + fixed1(y - r * 1.2) + " L" + fixed1(x + r * 1.1) + " " + fixed1(y + r * 0.9) +
             " L" + fixed1(x - r * 1.1) + " " + fixed1(y + r * 0.9) + " Z\"" + fill + "/>";
    case Marker::Diamond:
      return "<path d=\"M" + X + " " + fixed1(y - r * 1.3) + " L" + fixed1(x + r * 1.1) + " " + Y + " L" + X + " " +
             fixed1(y + r * 1.3) + " L" + fixed1(x - r * 1.1) + " " + Y + " Z\"" + fill + "/>";
    case Marker::Cross:
      return "<path d=\"M" + fixed1(x - r) + " " + fixed1(y - r) + " L" + fixed1(x + r) + " " + fixed1(y + r) + " M" +
             fixed1(x - r) + " " + fixed1(y + r) + " L" + fixed1(x + r) + " " + fixed1(y - r) + "\" stroke=\"" + color +
             "\" stroke-width=\"2\" fill=\"none\"/>";
  }
  return "";
}

// Maps data values to pixels on one axis (linear or log10).
struct Scale {
  double d0 = 0, d1 = 1;  // domain (for log axes: the values, not their logs)
  double p0 = 0, p1 = 1;  // pixels
  bool log = false;
  double operator()(double v) const {
    const double a = log ? std::log10(d0) : d0, b = log ? std::log10(d1) : d1;
    const double t = ((log ? std::log10(v) : v) - a) / (b - a);
    return p0 + t * (p1 - p0);
  }
};

// Chooses the domain and ticks for an axis from the data range.
void fit_axis(const Axis& ax, double lo, double hi, Scale& s, std::vector<double>& ticks) {
  if (ax.min) lo = *ax.min;
  if (ax.max) hi = *ax.max;
  s.log = ax.log;
  if (ax.log) {
    double a = std::floor(std::log10(lo)), b = std::ceil(std::log10(hi));
    if (b <= a) b = a + 1;
    s.d0 = ax.min ? lo : std::pow(10.0, a);
    s.d1 = ax.max ? hi : std::pow(10.0, b);
    ticks = log_ticks(s.d0, s.d1);
  } else {
    if (hi <= lo) {
      const double pad = lo == 0 ? 1.0 : std::fabs(lo) * 0.1;
      lo -= pad;
      hi += pad;
    }
    ticks = linear_ticks(lo, hi, 6);
    s.d0 = ax.min ? lo : std::min(lo, ticks.front());
    s.d1 = ax.max ? hi : std::max(hi, ticks.back());
    ticks.erase(std::remove_if(ticks.begin(), ticks.end(), [&](double t) { return t < s.d0 - 1e-12 || t > s.d1 + 1e-12; }),
                ticks.end());
  }
}

bool drawable(double v, bool log) { return std::isfinite(v) && (!log || v > 0); }

}  // namespace

std::string escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string fmt_num(double v) {
  if (!std::isfinite(v)) return "n/a";
  if (v == 0) return "0";
  const double a = std::fabs(v);
  char buf[48];
  if (a < 1e-3 || a >= 1e12)
    std::snprintf(buf, sizeof buf, "%.3g", v);
  else if (a >= 1e4)
    std::snprintf(buf, sizeof buf, std::floor(v) == v ? "%.0f" : "%.1f", v);
  else
    std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

std::string fmt_tick(double v) {
  if (!std::isfinite(v)) return "";
  const double a = std::fabs(v);
  char buf[48];
  if (a >= 1e9)
    std::snprintf(buf, sizeof buf, "%gG", v / 1e9);
  else if (a >= 1e6)
    std::snprintf(buf, sizeof buf, "%gM", v / 1e6);
  else if (a >= 1e4)
    std::snprintf(buf, sizeof buf, "%gk", v / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%g", std::fabs(v) < 1e-12 ? 0.0 : v);
  return buf;
}

std::vector<double> linear_ticks(double lo, double hi, int target) {
  if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi)) return {lo};
  const double raw = (hi - lo) / std::max(1, target - 1);
  const int k = static_cast<int>(std::floor(std::log10(raw)));
  // step = units x 10^(k-1) with integer units, so tick values are integer multiples of a power of
  // ten and print cleanly (0.6, not 0.6000000000000001)
  long units = 100;
  for (long u : {10L, 20L, 25L, 50L, 100L})
    if (static_cast<double>(u) * std::pow(10.0, k - 1) >= raw * (1 - 1e-12)) {
      units = u;
      break;
    }
  const double p10 = std::pow(10.0, std::abs(k - 1));
  auto value = [&](long i) {
    const double n = static_cast<double>(i * units);
    return k - 1 < 0 ? n / p10 : n * p10;
  };
  const double step = value(1);
  const long first = static_cast<long>(std::floor(lo / step + 1e-9));
  const long last = static_cast<long>(std::ceil(hi / step - 1e-9));
  std::vector<double> t;
  for (long i = first; i <= last; ++i) t.push_back(value(i));
  return t;
}

std::vector<double> log_ticks(double lo, double hi) {
  std::vector<double> t;
  if (!(lo > 0) || !(hi > lo)) return t;
  const int a = static_cast<int>(std::floor(std::log10(lo) + 1e-9));
  const int b = static_cast<int>(std::ceil(std::log10(hi) - 1e-9));
  const bool fine = (b - a) <= 2;
  const int stride = (b - a) > 12 ? 2 : 1;
  for (int e = a; e <= b; ++e) {
    const double d = std::pow(10.0, e);
    if ((e - a) % stride == 0 && d >= lo * (1 - 1e-9) && d <= hi * (1 + 1e-9)) t.push_back(d);
    if (fine)
      for (double m : {2.0, 5.0})
        if (m * d >= lo && m * d <= hi) t.push_back(m * d);
  }
  std::sort(t.begin(), t.end());
  return t;
}

const std::string& palette(size_t i) {
  static const std::vector<std::string> p = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                             "#E69F00", "#56B4E9", "#000000", "#8C564B"};
  return p[i % p.size()];
}

Marker marker_for(size_t i) {
  static const Marker m[] = {Marker::Circle, Marker::Square, Marker::Triangle, Marker::Diamond, Marker::Cross};
  return m[i % 5];
}

std::string render_xy(const XYChart& c) {
  size_t longest = 0;
  for (const auto& s : c.series) longest = std::max(longest, s.name.size());
  const double legend_w = std::clamp(kCharW * static_cast<double>(longest) + 60, 170.0, 340.0);
  const double left = 80, top = 40, bottom = 58;
  const double legend_h = 24 + 20.0 * static_cast<double>(c.series.size());
  const double height = std::max<double>(c.height, top + legend_h + 10);
  const double px0 = left, px1 = c.width - legend_w, py0 = top, py1 = height - bottom;

  // data range over drawable points
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  size_t n_points = 0;
  for (const auto& s : c.series)
    for (const auto& p : s.points)
      if (drawable(p.x, c.x.log) && drawable(p.y, c.y.log)) {
        xlo = std::min(xlo, p.x), xhi = std::max(xhi, p.x), ylo = std::min(ylo, p.y), yhi = std::max(yhi, p.y);
        ++n_points;
      }

  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"" << escape(c.id) << "\" class=\"chart\" width=\"" << c.width
    << "\" height=\"" << fixed1(height) << "\" viewBox=\"0 0 " << c.width << " " << fixed1(height)
    << "\" role=\"img\" aria-label=\"" << escape(c.title) << "\" " << kFont << " font-size=\"12\">\n";
  o << "<rect x=\"0\" y=\"0\" width=\"" << c.width << "\" height=\"" << fixed1(height) << "\" fill=\"#ffffff\"/>\n";
  o << text_el(px0, 22, c.title, "font-size=\"15\" font-weight=\"600\" fill=\"#1f2328\"");
  o << "<rect x=\"" << fixed1(px0) << "\" y=\"" << fixed1(py0) << "\" width=\"" << fixed1(px1 - px0) << "\" height=\""
    << fixed1(py1 - py0) << "\" fill=\"#fbfbfc\" stroke=\"#8c959f\"/>\n";

  if (n_points == 0) {
    o << text_el((px0 + px1) / 2, (py0 + py1) / 2, "no data to draw", "text-anchor=\"middle\" fill=\"#57606a\"");
    o << "</svg>\n";
    return o.str();
  }

  Scale sx, sy;
  std::vector<double> xt, yt;
  fit_axis(c.x, xlo, xhi, sx, xt);
  fit_axis(c.y, ylo, yhi, sy, yt);
  sx.p0 = px0, sx.p1 = px1;
  sy.p0 = py1, sy.p1 = py0;

  // grid, ticks, tick labels
  o << "<g class=\"axes\" fill=\"#57606a\">\n";
  for (double t : xt) {
    const double x = sx(t);
    o << "<line x1=\"" << fixed1(x) << "\" y1=\"" << fixed1(py0) << "\" x2=\"" << fixed1(x) << "\" y2=\"" << fixed1(py1)
      << "\" stroke=\"#d8dee4\" stroke-width=\"1\"/>\n";
    o << "<line x1=\"" << fixed1(x) << "\" y1=\"" << fixed1(py1) << "\" x2=\"" << fixed1(x) << "\" y2=\"" << fixed1(py1 + 5)
      << "\" stroke=\"#57606a\"/>\n";
    o << text_el(x, py1 + 18, fmt_tick(t), "text-anchor=\"middle\"");
  }
  for (double t : yt) {
    const double y = sy(t);
    o << "<line x1=\"" << fixed1(px0) << "\" y1=\"" << fixed1(y) << "\" x2=\"" << fixed1(px1) << "\" y2=\"" << fixed1(y)
      << "\" stroke=\"#d8dee4\" stroke-width=\"1\"/>\n";
    o << "<line x1=\"" << fixed1(px0 - 5) << "\" y1=\"" << fixed1(y) << "\" x2=\"" << fixed1(px0) << "\" y2=\"" << fixed1(y)
      << "\" stroke=\"#57606a\"/>\n";
    o << text_el(px0 - 8, y + 4, fmt_tick(t), "text-anchor=\"end\"");
  }
  o << "</g>\n";
  o << text_el((px0 + px1) / 2, py1 + 40, c.x.label + (c.x.log ? " (log scale)" : ""),
               "text-anchor=\"middle\" font-size=\"13\" fill=\"#1f2328\"");
  const double ylx = 20, yly = (py0 + py1) / 2;
  o << text_el(ylx, yly, c.y.label + (c.y.log ? " (log scale)" : ""),
               "text-anchor=\"middle\" font-size=\"13\" fill=\"#1f2328\" transform=\"rotate(-90 " + fixed1(ylx) + " " +
                   fixed1(yly) + ")\"");

  // series, clipped to the plot area
  const std::string clip = c.id + "-clip";
  o << "<clipPath id=\"" << escape(clip) << "\"><rect x=\"" << fixed1(px0) << "\" y=\"" << fixed1(py0) << "\" width=\""
    << fixed1(px1 - px0) << "\" height=\"" << fixed1(py1 - py0) << "\"/></clipPath>\n";
  o << "<g clip-path=\"url(#" << escape(clip) << ")\">\n";
  for (const auto& s : c.series) {
    std::vector<const Point*> pts;
    for (const auto& p : s.points)
      if (drawable(p.x, c.x.log) && drawable(p.y, c.y.log)) pts.push_back(&p);
    o << "<g class=\"series\"><title>" << escape(s.name) << "</title>\n";
    if (s.line && pts.size() >= 2) {
      o << "<polyline fill=\"none\" stroke=\"" << s.color << "\" stroke-width=\"2\"";
      if (!s.dash.empty()) o << " stroke-dasharray=\"" << s.dash << "\"";
      o << " points=\"";
      for (size_t i = 0; i < pts.size(); ++i) {
        if (s.step && i > 0) o << fixed1(sx(pts[i]->x)) << "," << fixed1(sy(pts[i - 1]->y)) << " ";
        o << fixed1(sx(pts[i]->x)) << "," << fixed1(sy(pts[i]->y)) << (i + 1 < pts.size() ? " " : "");
      }
      o << "\"/>\n";
    }
    if (s.marker != Marker::None)
      for (const Point* p : pts) {
        const std::string m = marker_el(s.marker, sx(p->x), sy(p->y), s.color);
        if (p->tip.empty())
          o << m << "\n";
        else
          o << "<g><title>" << escape(p->tip) << "</title>" << m << "</g>\n";
      }
    o << "</g>\n";
  }
  o << "</g>\n";

  // legend, to the right of the plot so it never covers data
  const double lx = px1 + 16;
  double ly = py0 + 10;
  o << "<g class=\"legend\">\n";
  for (const auto& s : c.series) {
    o << "<g><title>" << escape(s.name) << "</title>";
    if (s.line) {
      o << "<line x1=\"" << fixed1(lx) << "\" y1=\"" << fixed1(ly) << "\" x2=\"" << fixed1(lx + 26) << "\" y2=\""
        << fixed1(ly) << "\" stroke=\"" << s.color << "\" stroke-width=\"2\"";
      if (!s.dash.empty()) o << " stroke-dasharray=\"" << s.dash << "\"";
      o << "/>";
    }
    o << marker_el(s.marker, lx + 13, ly, s.color);
    o << "</g>\n" << text_el(lx + 34, ly + 4, clip_text(s.name, legend_w - 44), "fill=\"#1f2328\"");
    ly += 20;
  }
  o << "</g>\n";
  if (!c.note.empty()) o << text_el(px0, py1 + 54, c.note, "font-size=\"11\" fill=\"#57606a\"");
  o << "</svg>\n";
  return o.str();
}

std::string render_bars(const BarChart& c) {
  bool run_labels = false;
  for (const auto& g : c.groups)
    for (const auto& b : g.bars) run_labels = run_labels || !b.label.empty();
  const double gx = 10, rx = 130, bx0 = run_labels ? 250 : 140, text_w = 270;
  const double bx1 = c.width - text_w - 36, tx = c.width - text_w;
  const double row = 20, bar_h = 13, scale_h = 18, gap = 12, top = 44;

  double body = 0;
  for (const auto& g : c.groups) body += row * static_cast<double>(g.bars.size()) + scale_h + gap;
  // legend: flow left to right, wrapping
  std::vector<std::pair<double, double>> lpos;  // x, y offset within the legend block
  double lxp = 0, lyp = 0;
  for (const auto& it : c.legend) {
    const double w = 26 + kCharW * static_cast<double>(it.text.size()) + 18;
    if (lxp + w > c.width - 20 && lxp > 0) lxp = 0, lyp += 20;
    lpos.emplace_back(lxp, lyp);
    lxp += w;
  }
  const double legend_h = c.legend.empty() ? 0 : lyp + 24;
  const double height = top + body + 28 + legend_h + 8;

  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"" << escape(c.id) << "\" class=\"chart\" width=\"" << c.width
    << "\" height=\"" << fixed1(height) << "\" viewBox=\"0 0 " << c.width << " " << fixed1(height)
    << "\" role=\"img\" aria-label=\"" << escape(c.title) << "\" " << kFont << " font-size=\"12\">\n";
  o << "<rect x=\"0\" y=\"0\" width=\"" << c.width << "\" height=\"" << fixed1(height) << "\" fill=\"#ffffff\"/>\n";
  o << text_el(gx, 22, c.title, "font-size=\"15\" font-weight=\"600\" fill=\"#1f2328\"");
  o << text_el(tx, 36, "measured / verdict", "font-size=\"11\" fill=\"#57606a\"");
  if (c.groups.empty()) {
    o << text_el(c.width / 2.0, top + 10, "no numeric measurements to draw", "text-anchor=\"middle\" fill=\"#57606a\"");
  }

  double y = top;
  size_t gi = 0;
  for (const auto& g : c.groups) {
    double lo = 0, hi = 0;
    for (const auto& b : g.bars)
      if (std::isfinite(b.value)) lo = std::min(lo, b.value), hi = std::max(hi, b.value);
    if (g.threshold && std::isfinite(*g.threshold)) lo = std::min(lo, *g.threshold), hi = std::max(hi, *g.threshold);
    if (hi == lo) hi = lo + 1;
    const double pad = 0.06 * (hi - lo);
    std::vector<double> ticks = linear_ticks(lo < 0 ? lo - pad : lo, hi > 0 ? hi + pad : hi, 5);
    Scale s;
    s.d0 = std::min(lo, ticks.front());
    s.d1 = std::max(hi, ticks.back());
    s.p0 = bx0, s.p1 = bx1;
    const double gh = row * static_cast<double>(g.bars.size());
    o << "<g class=\"claim\"><title>" << escape(g.label + (g.tip.empty() ? "" : ": " + g.tip)) << "</title>\n";
    if (gi++ % 2 == 0)
      o << "<rect x=\"4\" y=\"" << fixed1(y - 4) << "\" width=\"" << c.width - 8 << "\" height=\""
        << fixed1(gh + scale_h + 6) << "\" fill=\"#f6f8fa\"/>\n";
    o << text_el(gx, y + row / 2 + 4, clip_text(g.label, (run_labels ? rx : bx0) - gx - 8),
                 "font-weight=\"600\" fill=\"#1f2328\"");
    // track and zero line
    o << "<rect x=\"" << fixed1(bx0) << "\" y=\"" << fixed1(y) << "\" width=\"" << fixed1(bx1 - bx0) << "\" height=\""
      << fixed1(gh) << "\" fill=\"none\" stroke=\"#d0d7de\"/>\n";
    const double zx = s(0);
    double by = y;
    for (const auto& b : g.bars) {
      if (run_labels) o << text_el(rx, by + row / 2 + 4, clip_text(b.label, bx0 - rx - 8), "fill=\"#57606a\"");
      if (std::isfinite(b.value)) {
        const double vx = s(b.value);
        o << "<rect x=\"" << fixed1(std::min(zx, vx)) << "\" y=\"" << fixed1(by + (row - bar_h) / 2) << "\" width=\""
          << fixed1(std::max(1.0, std::fabs(vx - zx))) << "\" height=\"" << fixed1(bar_h) << "\" fill=\"" << b.color
          << "\"/>\n";
      }
      o << text_el(tx, by + row / 2 + 4, clip_text(b.text, text_w - 6), "fill=\"#1f2328\"");
      by += row;
    }
    o << "<line x1=\"" << fixed1(zx) << "\" y1=\"" << fixed1(y) << "\" x2=\"" << fixed1(zx) << "\" y2=\"" << fixed1(y + gh)
      << "\" stroke=\"#57606a\"/>\n";
    if (g.threshold && std::isfinite(*g.threshold)) {
      const double tx0 = s(*g.threshold);
      o << "<line class=\"threshold\" x1=\"" << fixed1(tx0) << "\" y1=\"" << fixed1(y - 3) << "\" x2=\"" << fixed1(tx0)
        << "\" y2=\"" << fixed1(y + gh + 1) << "\" stroke=\"#1f2328\" stroke-width=\"2.5\"/>\n";
    }
    // the group's own scale: tick marks and labels under its bars
    const double sy0 = y + gh;
    o << "<g fill=\"#57606a\" font-size=\"10\">";
    for (double t : ticks) {
      if (t < s.d0 - 1e-12 || t > s.d1 + 1e-12) continue;
      const double x = s(t);
      o << "<line x1=\"" << fixed1(x) << "\" y1=\"" << fixed1(sy0) << "\" x2=\"" << fixed1(x) << "\" y2=\""
        << fixed1(sy0 + 3) << "\" stroke=\"#8c959f\"/>";
      o << text_el(x, sy0 + 13, fmt_tick(t), "text-anchor=\"middle\"");
    }
    o << "</g>\n";
    if (!g.threshold_text.empty())
      o << text_el(tx, sy0 + 13, "threshold " + g.threshold_text, "font-size=\"11\" fill=\"#57606a\"");
    o << "</g>\n";
    y += gh + scale_h + gap;
  }
  o << text_el(bx0, y + 8, c.axis_label, "font-size=\"12\" fill=\"#1f2328\"");
  const double ly0 = y + 30;
  o << "<g class=\"legend\">\n";
  for (size_t i = 0; i < c.legend.size(); ++i) {
    const double x = gx + lpos[i].first, ly = ly0 + lpos[i].second;
    if (c.legend[i].color.empty())  // the threshold tick
      o << "<line x1=\"" << fixed1(x + 9) << "\" y1=\"" << fixed1(ly - 8) << "\" x2=\"" << fixed1(x + 9) << "\" y2=\""
        << fixed1(ly + 6) << "\" stroke=\"#1f2328\" stroke-width=\"2.5\"/>";
    else
      o << "<rect x=\"" << fixed1(x) << "\" y=\"" << fixed1(ly - 7) << "\" width=\"18\" height=\"12\" fill=\""
        << c.legend[i].color << "\"/>";
    o << text_el(x + 24, ly + 3, c.legend[i].text, "fill=\"#1f2328\"");
  }
  o << "</g>\n</svg>\n";
  return o.str();
}

}  // namespace cb::harness::svg
