#include "cb/harness/core/results.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

namespace cb::harness {
namespace fs = std::filesystem;
using nlohmann::json;

std::string schema_version_string() { return std::to_string(kSchemaMajor) + "." + std::to_string(kSchemaMinor); }

const char* to_string(Direction d) {
  switch (d) {
    case Direction::HigherIsBetter: return "higher";
    case Direction::LowerIsBetter: return "lower";
    case Direction::Neutral: return "neutral";
  }
  return "neutral";
}

const char* to_string(NoiseClass n) {
  switch (n) {
    case NoiseClass::Exact: return "exact";
    case NoiseClass::Ratio: return "ratio";
    case NoiseClass::Timing: return "timing";
  }
  return "timing";
}

const char* to_string(SuiteStatus s) {
  switch (s) {
    case SuiteStatus::Ok: return "ok";
    case SuiteStatus::Error: return "error";
    case SuiteStatus::Timeout: return "timeout";
    case SuiteStatus::Skipped: return "skipped";
    case SuiteStatus::NotBuilt: return "not_built";
  }
  return "error";
}

Direction direction_from_string(const std::string& s, const std::string& where) {
  if (s == "higher") return Direction::HigherIsBetter;
  if (s == "lower") return Direction::LowerIsBetter;
  if (s == "neutral") return Direction::Neutral;
  throw SchemaError(where + ": direction '" + s + "' is not one of higher, lower, neutral");
}

NoiseClass noise_from_string(const std::string& s, const std::string& where) {
  if (s == "exact") return NoiseClass::Exact;
  if (s == "ratio") return NoiseClass::Ratio;
  if (s == "timing") return NoiseClass::Timing;
  throw SchemaError(where + ": noise '" + s + "' is not one of exact, ratio, timing");
}

SuiteStatus suite_status_from_string(const std::string& s, const std::string& where) {
  for (auto st : {SuiteStatus::Ok, SuiteStatus::Error, SuiteStatus::Timeout, SuiteStatus::Skipped, SuiteStatus::NotBuilt})
    if (s == to_string(st)) return st;
  throw SchemaError(where + ": status '" + s + "' is not one of ok, error, timeout, skipped, not_built");
}

json metric_to_json(const Metric& m) {
  json j = {{"key", m.key}, {"value", m.value}, {"unit", m.unit}, {"direction", to_string(m.direction)},
            {"noise", to_string(m.noise)}, {"samples", m.samples}, {"params", m.params}};
  if (!m.note.empty()) j["note"] = m.note;
  return j;
}

namespace {
template <class T>
T require(const json& j, const char* key, const std::string& where) {
  if (!j.is_object() || !j.contains(key)) throw SchemaError(where + ": missing key '" + key + "'");
  try {
    return j.at(key).get<T>();
  } catch (const json::exception& e) {
    throw SchemaError(where + "." + key + ": wrong type (" + e.what() + ")");
  }
}
}  // namespace

Metric metric_from_json(const json& j, const std::string& where) {
  Metric m;
  m.key = require<std::string>(j, "key", where);
  const std::string w = where + "[" + m.key + "]";
  const json& v = j.contains("value") ? j.at("value") : json();
  if (v.is_null()) {
    m.value = std::numeric_limits<double>::quiet_NaN();  // JSON has no NaN; null means "not a number"
  } else {
    m.value = require<double>(j, "value", w);
  }
  m.unit = j.value("unit", "");
  m.direction = direction_from_string(j.value("direction", "neutral"), w);
  m.noise = noise_from_string(j.value("noise", "timing"), w);
  if (j.contains("samples")) {
    if (!j.at("samples").is_array()) throw SchemaError(w + ".samples: must be an array");
    for (const auto& s : j.at("samples")) {
      if (!s.is_null() && !s.is_number()) throw SchemaError(w + ".samples: '" + s.dump() + "' is not a number");
      m.samples.push_back(s.is_null() ? std::numeric_limits<double>::quiet_NaN() : s.get<double>());
    }
  }
  if (j.contains("params")) m.params = j.at("params");
  m.note = j.value("note", "");
  return m;
}

const Metric* SuiteResult::find(const std::string& key) const {
  for (const auto& m : metrics)
    if (m.key == key) return &m;
  return nullptr;
}

Metric& SuiteResult::add(Metric m) {
  for (auto& existing : metrics)
    if (existing.key == m.key) return existing = std::move(m);
  metrics.push_back(std::move(m));
  return metrics.back();
}

json SuiteResult::to_json() const {
  json ms = json::array();
  for (const auto& m : metrics) ms.push_back(metric_to_json(m));
  json t = json::object();
  for (const auto& [k, v] : tables) t[k] = v;
  json j = {{"schema", "claimbench.suite"}, {"schema_version", schema_version_string()}, {"suite", suite},
            {"status", harness::to_string(status)}, {"seconds", seconds}, {"params", params},
            {"metrics", ms}, {"tables", t}};
  if (!reason.empty()) j["reason"] = reason;
  return j;
}

SuiteResult SuiteResult::from_json(const json& j, const std::string& source) {
  check_schema(j, "claimbench.suite", source);
  SuiteResult r;
  r.suite = require<std::string>(j, "suite", source);
  r.status = suite_status_from_string(require<std::string>(j, "status", source), source + ".status");
  r.reason = j.value("reason", "");
  r.seconds = j.value("seconds", 0.0);
  if (j.contains("params")) r.params = j.at("params");
  if (j.contains("metrics")) {
    if (!j.at("metrics").is_array()) throw SchemaError(source + ".metrics: must be an array");
    size_t i = 0;
    for (const auto& m : j.at("metrics")) r.metrics.push_back(metric_from_json(m, source + ".metrics[" + std::to_string(i++) + "]"));
  }
  if (j.contains("tables"))
    for (const auto& [k, v] : j.at("tables").items()) r.tables[k] = v;
  return r;
}

void check_schema(const json& j, const std::string& expected_kind, const std::string& source) {
  if (!j.is_object()) throw SchemaError(source + ": expected a JSON object");
  for (const char* k : {"schema", "schema_version"})
    if (j.contains(k) && !j[k].is_string()) throw SchemaError(source + ": key '" + k + "': expected a string, got " + j[k].dump());
  const std::string kind = j.value("schema", "");
  if (kind != expected_kind)
    throw SchemaError(source + ": schema is '" + kind + "', expected '" + expected_kind + "'");
  const std::string ver = j.value("schema_version", "");
  const auto dot = ver.find('.');
  int major = -1;
  try {
    major = std::stoi(ver.substr(0, dot));
  } catch (...) {
    throw SchemaError(source + ": schema_version '" + ver + "' is not MAJOR.MINOR");
  }
  if (major != kSchemaMajor)
    throw SchemaError(source + ": schema_version " + ver + " has major version " + std::to_string(major) +
                      "; this claimbench reads major version " + std::to_string(kSchemaMajor) +
                      " (upgrade claimbench, or re-run the suite with this version)");
}

namespace {
std::string g_fault_kill_mid_write;  // see set_fault_kill_mid_write

[[noreturn]] void write_failed(const fs::path& path, const fs::path& tmp, int fd, const std::string& what, int err) {
  if (fd >= 0) ::close(fd);
  ::unlink(tmp.c_str());
  throw std::runtime_error(path.string() + ": " + what + " (" + std::strerror(err) + "); " +
                           (fs::exists(path) ? "its previous contents are unchanged" : "no file was written"));
}
}  // namespace

void set_fault_kill_mid_write(const std::string& file_name) { g_fault_kill_mid_write = file_name; }

bool is_atomic_write_temp(const fs::path& path) {
  const std::string name = path.filename().string();
  const size_t at = name.rfind(".tmp.");
  if (at == std::string::npos || at + 5 >= name.size()) return false;
  return std::all_of(name.begin() + long(at) + 5, name.end(), [](char c) { return c >= '0' && c <= '9'; });
}

void write_text_atomic(const fs::path& path, const std::string& text) {
  if (path.has_parent_path()) fs::create_directories(path.parent_path());
  const fs::path tmp = path.string() + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) write_failed(path, tmp, -1, "cannot create " + tmp.filename().string(), errno);
  const bool kill_mid = !g_fault_kill_mid_write.empty() && path.filename() == g_fault_kill_mid_write;
  const size_t stop_at = kill_mid ? text.size() / 2 : text.size();
  size_t done = 0;
  while (done < stop_at) {
    const ssize_t n = ::write(fd, text.data() + done, stop_at - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      write_failed(path, tmp, fd, "write failed after " + std::to_string(done) + " of " + std::to_string(text.size()) + " bytes",
                   n < 0 ? errno : EIO);
    done += size_t(n);
  }
  if (kill_mid) {
    ::fsync(fd);
    ::kill(::getpid(), SIGKILL);
  }
  // On disk before the rename, so a crash of the machine leaves the old file or the new one.
  if (::fsync(fd) != 0) write_failed(path, tmp, fd, "flushing to disk failed", errno);
  if (::close(fd) != 0) write_failed(path, tmp, -1, "closing failed", errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) write_failed(path, tmp, -1, "cannot replace the file", errno);
}

void write_json_atomic(const fs::path& path, const json& j) { write_text_atomic(path, j.dump(2) + "\n"); }

json read_json_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw SchemaError(path.string() + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::parse_error& e) {
    throw SchemaError(path.string() + ": invalid JSON at byte " + std::to_string(e.byte) + ": " + e.what());
  } catch (const json::out_of_range& e) {  // a number no double holds (1e400): nlohmann's 406
    throw SchemaError(path.string() + ": invalid JSON: " + e.what());
  }
}

fs::path create_unique_dir(const fs::path& base, const std::string& run_id) {
  fs::create_directories(base);
  for (int i = 1; i < 10000; ++i) {
    const fs::path p = base / (i == 1 ? run_id : run_id + "-" + std::to_string(i));
    if (fs::create_directory(p)) return p;  // false when it already exists: try the next name
  }
  throw std::runtime_error(base.string() + ": could not create a unique run folder for " + run_id);
}

namespace {
std::string csv_escape(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += (c == '"') ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}
std::string cell(const json& v) {
  if (v.is_string()) return csv_escape(v.get<std::string>());
  if (v.is_null()) return "";
  return csv_escape(v.dump());
}
}  // namespace

void write_suite_csvs(const fs::path& dir, const SuiteResult& r) {
  std::ostringstream os;
  os << "key,value,unit,direction,noise,n_samples,params\n";
  for (const auto& m : r.metrics)
    os << csv_escape(m.key) << "," << cell(json(m.value)) << "," << csv_escape(m.unit) << "," << to_string(m.direction)
       << "," << to_string(m.noise) << "," << m.samples.size() << "," << csv_escape(m.params.dump()) << "\n";
  write_text_atomic(dir / (r.suite + ".csv"), os.str());
  for (const auto& [name, rows] : r.tables) {
    if (!rows.is_array() || rows.empty()) continue;
    std::vector<std::string> cols;
    for (const auto& row : rows)
      for (const auto& [k, v] : row.items())
        if (std::find(cols.begin(), cols.end(), k) == cols.end()) cols.push_back(k);
    std::ostringstream t;
    for (size_t i = 0; i < cols.size(); ++i) t << (i ? "," : "") << csv_escape(cols[i]);
    t << "\n";
    for (const auto& row : rows) {
      for (size_t i = 0; i < cols.size(); ++i) t << (i ? "," : "") << (row.contains(cols[i]) ? cell(row.at(cols[i])) : "");
      t << "\n";
    }
    write_text_atomic(dir / (r.suite + "." + name + ".csv"), t.str());
  }
}

namespace {

// The manifest fields that compare, check, report and the gate read, typed: each, when present,
// must have the type they read it as (they would otherwise fail with nlohmann's type_error, far
// from the file). Errors name the file and the key path.
void check_manifest_fields(const json& m, const std::string& source) {
  auto bad = [&](const std::string& path, const char* want, const json& v) {
    throw SchemaError(source + ": key '" + path + "': expected " + want + ", got " + v.dump());
  };
  auto field = [&](const json& obj, const std::string& parent, const char* key, auto is_type, const char* want) -> const json* {
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return nullptr;
    const std::string path = parent.empty() ? key : parent + "." + key;
    if (!is_type(*it)) bad(path, want, *it);
    return &*it;
  };
  const auto is_string = [](const json& v) { return v.is_string(); };
  const auto is_object = [](const json& v) { return v.is_object(); };
  const auto is_array = [](const json& v) { return v.is_array(); };
  const auto is_number = [](const json& v) { return v.is_number(); };
  for (const char* k : {"run_id", "started_at", "finished_at"}) field(m, "", k, is_string, "a string");
  for (const char* k : {"params", "seeds"}) field(m, "", k, is_object, "an object");
  if (const json* b = field(m, "", "build", is_object, "an object"))
    for (const char* k : {"commit", "build_type", "compiler"}) field(*b, "build", k, is_string, "a string");
  if (const json* h = field(m, "", "hardware", is_object, "an object")) {
    for (const char* k : {"fingerprint", "cpu_model", "cpu_vendor", "hostname", "os", "hypervisor"})
      field(*h, "hardware", k, is_string, "a string");
    for (const char* k : {"cores", "threads", "memory_bytes"}) field(*h, "hardware", k, is_number, "a number");
    field(*h, "hardware", "cpu_flags", is_array, "an array");
    field(*h, "hardware", "fingerprint_fields", is_object, "an object");
    if (const json* g = field(*h, "hardware", "gpus", is_array, "an array"))
      for (size_t i = 0; i < g->size(); ++i) {
        const std::string path = "hardware.gpus[" + std::to_string(i) + "]";
        if (!(*g)[i].is_object()) bad(path, "an object", (*g)[i]);
        field((*g)[i], path, "name", is_string, "a string");
      }
  }
  if (const json* su = field(m, "", "suites", is_object, "an object"))
    for (const auto& [name, e] : su->items()) {
      if (!e.is_object()) bad("suites." + name, "an object", e);
      for (const char* k : {"status", "reason"}) field(e, "suites." + name, k, is_string, "a string");
    }
}

}  // namespace

RunData RunData::load(const fs::path& dir) {
  if (!fs::is_directory(dir)) throw SchemaError(dir.string() + ": not a run folder (no such directory)");
  RunData run;
  run.dir = dir;
  const fs::path mpath = dir / "manifest.json";
  if (!fs::exists(mpath)) throw SchemaError(dir.string() + ": not a run folder (no manifest.json)");
  run.manifest = read_json_file(mpath);
  check_schema(run.manifest, "claimbench.manifest", mpath.string());
  check_manifest_fields(run.manifest, mpath.string());
  for (const auto& entry : fs::directory_iterator(dir)) {
    const fs::path p = entry.path();
    if (p.extension() != ".json" || p.filename() == "manifest.json" || p.filename() == "claims.json") continue;
    const json j = read_json_file(p);
    if (!j.is_object() || j.value("schema", "") != "claimbench.suite") continue;  // other JSON (not ours)
    SuiteResult r = SuiteResult::from_json(j, p.string());
    run.suites[r.suite] = std::move(r);
  }
  return run;
}

const Metric* RunData::find_metric(const std::string& key) const {
  for (const auto& [name, s] : suites)
    if (const Metric* m = s.find(key)) return m;
  return nullptr;
}

std::string RunData::label() const {
  // load() checked the types; a field may still be absent or null.
  auto text = [](const json& obj, const char* key, const std::string& dflt) {
    const auto it = obj.find(key);
    return it != obj.end() && it->is_string() ? it->get<std::string>() : dflt;
  };
  std::string id = text(manifest, "run_id", dir.filename().string());
  const auto hw = manifest.find("hardware");
  if (hw != manifest.end() && hw->is_object()) {
    const auto cores = hw->find("cores");
    id += " (" + text(*hw, "cpu_model", "?") + ", " +
          (cores == hw->end() || !cores->is_number() ? std::string("?")
           : cores->is_number_integer() ? cores->dump() : std::to_string(cores->get<double>())) + " cores";
    const auto gpus = hw->find("gpus");
    if (gpus != hw->end() && gpus->is_array() && !gpus->empty() && gpus->front().is_object())
      id += ", " + text(gpus->front(), "name", "GPU");
    id += ")";
  }
  return id;
}

double median(std::vector<double> v) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string metric_key_segments(std::string name) {
  for (char& c : name) {
    if (c == '-') c = '_';
    else if (c == '/') c = '.';
  }
  return name;
}

}  // namespace cb::harness
