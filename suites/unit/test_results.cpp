// The results schema (results/SCHEMA.md): suite files round-trip through JSON text, schema and
// field errors name the file and the JSON path, run folders are never reused, writes are atomic,
// CSVs escape what they must, and RunData::load reads only what is a run folder's own.
#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <utility>
#include <vector>
#include <unistd.h>

#include <gtest/gtest.h>

#include "cb/harness/core/results.h"
#include "test_support.h"

using namespace cb::harness;
namespace fs = std::filesystem;
using cb::test::read_file;
using nlohmann::json;

namespace {

fs::path results_dir(const std::string& tag) { return cb::test::fresh_dir(cb::test::process_temp_root("results"), tag); }

// The message of the SchemaError `fn` throws, or a test failure when it throws nothing.
template <class F>
std::string schema_error(F fn) {
  try {
    fn();
  } catch (const SchemaError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a SchemaError";
  return "";
}

SuiteResult sample_suite() {
  SuiteResult r;
  r.suite = "demo";
  r.status = SuiteStatus::Ok;
  r.seconds = 1.25;
  r.params = {{"quick", true}, {"model", "tiny"}};
  Metric a;
  a.key = "demo.speed.gflops";
  a.value = 12.5;
  a.unit = "GFLOP/s";
  a.direction = Direction::HigherIsBetter;
  a.noise = NoiseClass::Timing;
  a.samples = {12.0, 12.5, 13.0};
  a.params = {{"M", 128}, {"dtype", "f32"}};
  a.note = "batch 1";
  r.add(a);
  Metric b;
  b.key = "demo.broken.value";
  b.value = std::numeric_limits<double>::quiet_NaN();
  b.unit = "x";
  b.direction = Direction::LowerIsBetter;
  b.noise = NoiseClass::Ratio;
  b.samples = {1.0, std::numeric_limits<double>::quiet_NaN(), 3.0};
  r.add(b);
  Metric c;
  c.key = "demo.count.bytes";
  c.value = 4096;
  c.unit = "bytes";
  c.noise = NoiseClass::Exact;  // direction stays neutral
  r.add(c);
  r.tables["rows"] = json::array({{{"name", "a"}, {"value", 1}}, {{"name", "b"}, {"value", 2}}});
  return r;
}

json suite_json() {
  return {{"schema", "claimbench.suite"}, {"schema_version", "1.0"}, {"suite", "demo"}, {"status", "ok"}, {"seconds", 0.5},
          {"metrics", json::array({{{"key", "demo.a"}, {"value", 1.0}, {"samples", {1.0, 2.0}}}})}};
}

json manifest_json() {
  return {{"schema", "claimbench.manifest"}, {"schema_version", "1.0"}, {"run_id", "test-run"},
          {"hardware", {{"cpu_model", "Test CPU"}, {"cores", 2}, {"fingerprint", "abc"}}}, {"suites", json::object()}};
}

}  // namespace

// Through JSON *text* (as on disk): NaN is written as null and read back as NaN, in the value and
// in samples; every other field survives unchanged.
TEST(ResultsSchema, SuiteResultRoundTripThroughText) {
  const SuiteResult in = sample_suite();
  const std::string text = in.to_json().dump(2);
  const json parsed = json::parse(text);
  EXPECT_EQ(parsed["schema"], "claimbench.suite");
  EXPECT_EQ(parsed["schema_version"], schema_version_string());
  EXPECT_EQ(parsed["schema_version"], "1.0");
  EXPECT_TRUE(parsed["metrics"][1]["value"].is_null()) << text;
  EXPECT_TRUE(parsed["metrics"][1]["samples"][1].is_null()) << text;
  EXPECT_FALSE(parsed["metrics"][0].contains("reason"));
  EXPECT_FALSE(parsed["metrics"][1].contains("note")) << "an empty note is left out";
  EXPECT_FALSE(parsed.contains("reason")) << "an empty reason is left out";

  const SuiteResult out = SuiteResult::from_json(parsed, "demo.json");
  EXPECT_EQ(out.suite, "demo");
  EXPECT_EQ(out.status, SuiteStatus::Ok);
  EXPECT_DOUBLE_EQ(out.seconds, 1.25);
  EXPECT_EQ(out.params, in.params);
  ASSERT_EQ(out.metrics.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const Metric& a = in.metrics[i];
    const Metric& b = out.metrics[i];
    SCOPED_TRACE(a.key);
    EXPECT_EQ(b.key, a.key);
    EXPECT_EQ(b.unit, a.unit);
    EXPECT_EQ(b.direction, a.direction);
    EXPECT_EQ(b.noise, a.noise);
    EXPECT_EQ(b.params, a.params);
    EXPECT_EQ(b.note, a.note);
    if (std::isnan(a.value)) EXPECT_TRUE(std::isnan(b.value));
    else EXPECT_DOUBLE_EQ(b.value, a.value);
    ASSERT_EQ(b.samples.size(), a.samples.size());
    for (size_t k = 0; k < a.samples.size(); ++k) {
      if (std::isnan(a.samples[k])) EXPECT_TRUE(std::isnan(b.samples[k])) << "sample " << k;
      else EXPECT_DOUBLE_EQ(b.samples[k], a.samples[k]) << "sample " << k;
    }
  }
  ASSERT_EQ(out.tables.count("rows"), 1u);
  EXPECT_EQ(out.tables.at("rows"), in.tables.at("rows"));
  // And once more: the round trip is stable.
  EXPECT_EQ(SuiteResult::from_json(json::parse(out.to_json().dump()), "again.json").to_json().dump(), parsed.dump());
}

TEST(ResultsSchema, StatusesAndReasonRoundTrip) {
  for (auto st : {SuiteStatus::Ok, SuiteStatus::Error, SuiteStatus::Timeout, SuiteStatus::Skipped, SuiteStatus::NotBuilt}) {
    const std::string name = to_string(st);
    SuiteResult r;
    r.suite = "suite-" + name;
    r.status = st;
    r.reason = "because " + name;
    const SuiteResult back = SuiteResult::from_json(json::parse(r.to_json().dump()), "s.json");
    EXPECT_EQ(back.status, st);
    EXPECT_EQ(back.reason, r.reason);
  }
}

// Missing optional fields take the documented defaults.
TEST(ResultsSchema, MetricDefaults) {
  const Metric m = metric_from_json({{"key", "k"}}, "f.json.metrics[0]");
  EXPECT_EQ(m.key, "k");
  EXPECT_TRUE(std::isnan(m.value));
  EXPECT_EQ(m.unit, "");
  EXPECT_EQ(m.direction, Direction::Neutral);
  EXPECT_EQ(m.noise, NoiseClass::Timing);
  EXPECT_TRUE(m.samples.empty());
  EXPECT_EQ(m.params, json::object());
  EXPECT_EQ(m.note, "");
}

TEST(ResultsSchema, CheckSchemaRejectsUnknownMajorNamingFileAndVersions) {
  json j = suite_json();
  j["schema_version"] = "2.0";
  const std::string msg = schema_error([&] { check_schema(j, "claimbench.suite", "/runs/x/demo.json"); });
  EXPECT_NE(msg.find("/runs/x/demo.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("2.0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("major version 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("major version 1"), std::string::npos) << msg;
  // from_json goes through the same check.
  const std::string msg2 = schema_error([&] { SuiteResult::from_json(j, "/runs/x/demo.json"); });
  EXPECT_NE(msg2.find("/runs/x/demo.json"), std::string::npos) << msg2;
  EXPECT_NE(msg2.find("2.0"), std::string::npos) << msg2;
}

TEST(ResultsSchema, CheckSchemaAcceptsHigherMinorAndIgnoresUnknownFields) {
  json j = suite_json();
  j["schema_version"] = "1.7";
  j["a_field_from_the_future"] = {{"x", 1}};
  j["metrics"][0]["another_new_field"] = true;
  EXPECT_NO_THROW(check_schema(j, "claimbench.suite", "demo.json"));
  const SuiteResult r = SuiteResult::from_json(j, "demo.json");
  ASSERT_EQ(r.metrics.size(), 1u);
  EXPECT_DOUBLE_EQ(r.metrics[0].value, 1.0);
}

TEST(ResultsSchema, CheckSchemaRejectsWrongKindAndBadVersion) {
  json j = suite_json();
  std::string msg = schema_error([&] { check_schema(j, "claimbench.manifest", "m.json"); });
  EXPECT_NE(msg.find("m.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("claimbench.suite"), std::string::npos) << msg;
  EXPECT_NE(msg.find("claimbench.manifest"), std::string::npos) << msg;
  j["schema_version"] = "one";
  msg = schema_error([&] { check_schema(j, "claimbench.suite", "s.json"); });
  EXPECT_NE(msg.find("s.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'one'"), std::string::npos) << msg;
  msg = schema_error([&] { check_schema(json::array(), "claimbench.suite", "arr.json"); });
  EXPECT_NE(msg.find("arr.json"), std::string::npos) << msg;
}

TEST(ResultsSchema, FromJsonErrorsNameFileAndPath) {
  {  // missing key
    json j = suite_json();
    j.erase("suite");
    const std::string msg = schema_error([&] { SuiteResult::from_json(j, "/r/demo.json"); });
    EXPECT_NE(msg.find("/r/demo.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("missing key 'suite'"), std::string::npos) << msg;
  }
  {  // missing key inside a metric
    json j = suite_json();
    j["metrics"][0].erase("key");
    const std::string msg = schema_error([&] { SuiteResult::from_json(j, "/r/demo.json"); });
    EXPECT_NE(msg.find("/r/demo.json.metrics[0]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'key'"), std::string::npos) << msg;
  }
  {  // bad status
    json j = suite_json();
    j["status"] = "finished";
    const std::string msg = schema_error([&] { SuiteResult::from_json(j, "/r/demo.json"); });
    EXPECT_NE(msg.find("/r/demo.json.status"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'finished'"), std::string::npos) << msg;
  }
  {  // bad direction
    json j = suite_json();
    j["metrics"][0]["direction"] = "up";
    const std::string msg = schema_error([&] { SuiteResult::from_json(j, "/r/demo.json"); });
    EXPECT_NE(msg.find("/r/demo.json.metrics[0][demo.a]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("direction 'up'"), std::string::npos) << msg;
  }
  {  // bad noise class
    json j = suite_json();
    j["metrics"][0]["noise"] = "loud";
    const std::string msg = schema_error([&] { SuiteResult::from_json(j, "/r/demo.json"); });
    EXPECT_NE(msg.find("/r/demo.json.metrics[0][demo.a]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("noise 'loud'"), std::string::npos) << msg;
  }
  {  // non-number sample
    json j = suite_json();
    j["metrics"][0]["samples"] = {1.0, "fast", 3.0};
    const std::string msg = schema_error([&] { SuiteResult::from_json(j, "/r/demo.json"); });
    EXPECT_NE(msg.find("/r/demo.json.metrics[0][demo.a].samples"), std::string::npos) << msg;
    EXPECT_NE(msg.find("fast"), std::string::npos) << msg;
  }
  {  // samples not an array
    json j = suite_json();
    j["metrics"][0]["samples"] = 3.0;
    const std::string msg = schema_error([&] { SuiteResult::from_json(j, "/r/demo.json"); });
    EXPECT_NE(msg.find("/r/demo.json.metrics[0][demo.a].samples"), std::string::npos) << msg;
  }
  {  // value of the wrong type
    json j = suite_json();
    j["metrics"][0]["value"] = "12";
    const std::string msg = schema_error([&] { SuiteResult::from_json(j, "/r/demo.json"); });
    EXPECT_NE(msg.find("/r/demo.json.metrics[0][demo.a].value"), std::string::npos) << msg;
  }
  {  // metrics not an array
    json j = suite_json();
    j["metrics"] = json::object();
    const std::string msg = schema_error([&] { SuiteResult::from_json(j, "/r/demo.json"); });
    EXPECT_NE(msg.find("/r/demo.json.metrics"), std::string::npos) << msg;
  }
}

TEST(ResultsSchema, AddReplacesSameKey) {
  SuiteResult r;
  Metric m;
  m.key = "k";
  m.value = 1;
  r.add(m);
  m.value = 2;
  r.add(m);
  ASSERT_EQ(r.metrics.size(), 1u);
  ASSERT_NE(r.find("k"), nullptr);
  EXPECT_DOUBLE_EQ(r.find("k")->value, 2);
  EXPECT_EQ(r.find("nope"), nullptr);
}

TEST(ResultsFiles, CreateUniqueDirNeverReusesAFolder) {
  const fs::path base = results_dir("unique") / "runs";  // created by the first call
  const fs::path a = create_unique_dir(base, "20261129T000000Z-abc");
  EXPECT_EQ(a.string(), (base / "20261129T000000Z-abc").string());
  { std::ofstream(a / "keep.txt") << "first run"; }
  const fs::path b = create_unique_dir(base, "20261129T000000Z-abc");
  EXPECT_EQ(b.string(), (base / "20261129T000000Z-abc-2").string());
  const fs::path c = create_unique_dir(base, "20261129T000000Z-abc");
  EXPECT_EQ(c.string(), (base / "20261129T000000Z-abc-3").string());
  // A name taken by something else (here -4, made by hand) is skipped as well.
  fs::create_directory(base / "20261129T000000Z-abc-4");
  const fs::path d = create_unique_dir(base, "20261129T000000Z-abc");
  EXPECT_EQ(d.string(), (base / "20261129T000000Z-abc-5").string());
  EXPECT_EQ(read_file(a / "keep.txt"), "first run") << "an existing run folder is never touched";
  EXPECT_TRUE(fs::is_empty(b));
  fs::remove_all(base.parent_path());
}

TEST(ResultsFiles, WriteJsonAtomicReplacesAndLeavesNoTempFile) {
  const fs::path dir = results_dir("atomic");
  const fs::path f = dir / "sub" / "x.json";  // the parent folder is created
  write_json_atomic(f, {{"v", 1}, {"long", std::string(1000, 'a')}});
  EXPECT_EQ(read_json_file(f)["v"], 1);
  write_json_atomic(f, {{"v", 2}});
  const json back = read_json_file(f);
  EXPECT_EQ(back["v"], 2);
  EXPECT_FALSE(back.contains("long")) << "the old content is replaced, not merged or appended";
  EXPECT_EQ(read_file(f), json({{"v", 2}}).dump(2) + "\n");
  for (const auto& e : fs::recursive_directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << "left behind: " << e.path();
  write_text_atomic(dir / "t.txt", "hello");
  EXPECT_EQ(read_file(dir / "t.txt"), "hello");
  fs::remove_all(dir);
}

TEST(ResultsFiles, ReadJsonFileErrorsNameTheFile) {
  const fs::path dir = results_dir("readjson");
  std::ofstream(dir / "bad.json") << "{\"a\": 1,";
  std::string msg = schema_error([&] { read_json_file(dir / "bad.json"); });
  EXPECT_NE(msg.find((dir / "bad.json").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("invalid JSON"), std::string::npos) << msg;
  // The fuzzers' number-overflow finding: 1e400 is nlohmann's out_of_range, not a parse_error.
  std::ofstream(dir / "big.json") << "{\"a\": 1e400}";
  msg = schema_error([&] { read_json_file(dir / "big.json"); });
  EXPECT_NE(msg.find("big.json: invalid JSON"), std::string::npos) << msg;
  msg = schema_error([&] { read_json_file(dir / "absent.json"); });
  EXPECT_NE(msg.find("absent.json"), std::string::npos) << msg;
  fs::remove_all(dir);
}

TEST(ResultsFiles, SuiteCsvColumnsAndEscaping) {
  const fs::path dir = results_dir("csv");
  SuiteResult r;
  r.suite = "demo";
  Metric m;
  m.key = "demo.we,ird\"key";
  m.value = 1.5;
  m.unit = "GB/s";
  m.direction = Direction::HigherIsBetter;
  m.noise = NoiseClass::Exact;
  m.samples = {1.0, 1.5, 2.0};
  m.params = {{"a", 1}, {"b", "c"}};
  m.note = "not in the CSV";
  r.add(m);
  Metric n;
  n.key = "demo.nan";
  n.value = std::numeric_limits<double>::quiet_NaN();
  r.add(n);
  r.tables["t"] = json::array({{{"name", "x, \"y\""}, {"v", 2}}, {{"v", std::numeric_limits<double>::quiet_NaN()}, {"extra", nullptr}},
                               {{"name", "line\nbreak"}, {"extra", true}}});
  r.tables["empty"] = json::array();
  write_suite_csvs(dir, r);

  EXPECT_EQ(read_file(dir / "demo.csv"),
            "key,value,unit,direction,noise,n_samples,params\n"
            "\"demo.we,ird\"\"key\",1.5,GB/s,higher,exact,3,\"{\"\"a\"\":1,\"\"b\"\":\"\"c\"\"}\"\n"
            "demo.nan,null,,neutral,timing,0,{}\n");
  // Columns in order of first appearance (keys sorted within a row); missing or null -> empty; NaN -> null.
  EXPECT_EQ(read_file(dir / "demo.t.csv"),
            "name,v,extra\n"
            "\"x, \"\"y\"\"\",2,\n"
            ",null,\n"
            "\"line\nbreak\",,true\n");
  EXPECT_FALSE(fs::exists(dir / "demo.empty.csv")) << "no file for an empty table";
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << "left behind: " << e.path();
  fs::remove_all(dir);
}

TEST(ResultsRunData, RejectsFolderWithoutManifest) {
  const fs::path dir = results_dir("nomanifest");
  write_json_atomic(dir / "demo.json", suite_json());
  std::string msg = schema_error([&] { RunData::load(dir); });
  EXPECT_NE(msg.find(dir.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("manifest.json"), std::string::npos) << msg;
  msg = schema_error([&] { RunData::load(dir / "does-not-exist"); });
  EXPECT_NE(msg.find("does-not-exist"), std::string::npos) << msg;
  fs::remove_all(dir);
}

TEST(ResultsRunData, RejectsManifestWithWrongSchema) {
  const fs::path dir = results_dir("badmanifest");
  json m = manifest_json();
  m["schema"] = "claimbench.suite";
  write_json_atomic(dir / "manifest.json", m);
  std::string msg = schema_error([&] { RunData::load(dir); });
  EXPECT_NE(msg.find("manifest.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("claimbench.manifest"), std::string::npos) << msg;
  m = manifest_json();
  m["schema_version"] = "3.1";
  write_json_atomic(dir / "manifest.json", m);
  msg = schema_error([&] { RunData::load(dir); });
  EXPECT_NE(msg.find("manifest.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("3.1"), std::string::npos) << msg;
  fs::remove_all(dir);
}

// Found by fuzz_run_folder: a manifest field of another type than its readers take (label(),
// compare, check, the gate) escaped as nlohmann's type_error, naming neither file nor key.
TEST(ResultsRunData, ManifestFieldsOfTheWrongTypeNameFileAndKey) {
  const fs::path dir = results_dir("manifesttypes");
  const std::vector<std::pair<std::function<void(json&)>, std::string>> cases = {
      {[](json& m) { m["run_id"] = 5; }, "key 'run_id': expected a string, got 5"},
      {[](json& m) { m["schema"] = 1; }, "key 'schema': expected a string, got 1"},
      {[](json& m) { m["hardware"] = "x"; }, "key 'hardware': expected an object, got \"x\""},
      {[](json& m) { m["hardware"]["cpu_model"] = 7; }, "key 'hardware.cpu_model': expected a string, got 7"},
      {[](json& m) { m["hardware"]["cores"] = "two"; }, "key 'hardware.cores': expected a number, got \"two\""},
      {[](json& m) { m["hardware"]["gpus"] = json::array({{{"name", 3}}}); }, "key 'hardware.gpus[0].name': expected a string, got 3"},
      {[](json& m) { m["hardware"]["gpus"] = json::array({1}); }, "key 'hardware.gpus[0]': expected an object, got 1"},
      {[](json& m) { m["suites"] = {{"engine", {{"status", 1}}}}; }, "key 'suites.engine.status': expected a string, got 1"},
      {[](json& m) { m["build"] = {{"commit", false}}; }, "key 'build.commit': expected a string, got false"},
  };
  for (const auto& [edit, want] : cases) {
    json m = manifest_json();
    if (!m.contains("hardware")) m["hardware"] = json::object();
    edit(m);
    write_json_atomic(dir / "manifest.json", m);
    const std::string msg = schema_error([&] { RunData::load(dir); });
    EXPECT_NE(msg.find("manifest.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find(want), std::string::npos) << "want: " << want << "\ngot: " << msg;
  }
  json m = manifest_json();
  m["run_id"] = nullptr;  // null is as good as absent
  write_json_atomic(dir / "manifest.json", m);
  EXPECT_NO_THROW(RunData::load(dir).label());
  fs::remove_all(dir);
}

TEST(ResultsRunData, LoadsSuitesAndIgnoresOtherJson) {
  const fs::path dir = results_dir("rundata");
  write_json_atomic(dir / "manifest.json", manifest_json());
  write_json_atomic(dir / "demo.json", suite_json());
  SuiteResult other = sample_suite();
  other.suite = "second";
  write_json_atomic(dir / "second.json", json::parse(other.to_json().dump()));
  write_json_atomic(dir / "notes.json", {{"schema", "other"}, {"schema_version", "9.0"}, {"whatever", 1}});
  write_json_atomic(dir / "tool.json", {{"context", {{"host", "x"}}}, {"benchmarks", json::array()}});  // no schema at all
  write_json_atomic(dir / "claims.json", {{"schema", "claimbench.claims"}, {"schema_version", "1.0"}});
  std::ofstream(dir / "demo.csv") << "not json";
  std::ofstream(dir / "run.log") << "log";
  fs::create_directories(dir / "raw");
  std::ofstream(dir / "raw" / "demo.gbench.json") << "{ not even json";  // subfolders are not read

  const RunData run = RunData::load(dir);
  EXPECT_EQ(run.dir.string(), dir.string());
  EXPECT_EQ(run.manifest["run_id"], "test-run");
  ASSERT_EQ(run.suites.size(), 2u);
  EXPECT_EQ(run.suites.count("demo"), 1u);
  EXPECT_EQ(run.suites.count("second"), 1u);
  ASSERT_NE(run.find_metric("demo.a"), nullptr);
  EXPECT_DOUBLE_EQ(run.find_metric("demo.a")->value, 1.0);
  ASSERT_NE(run.find_metric("demo.broken.value"), nullptr);
  EXPECT_TRUE(std::isnan(run.find_metric("demo.broken.value")->value));
  EXPECT_EQ(run.find_metric("nope"), nullptr);
  EXPECT_NE(run.label().find("test-run"), std::string::npos);
  EXPECT_NE(run.label().find("Test CPU"), std::string::npos);

  // A suite file with an unknown major version makes the folder unreadable, naming that file.
  json bad = suite_json();
  bad["suite"] = "bad";
  bad["schema_version"] = "2.0";
  write_json_atomic(dir / "bad.json", bad);
  const std::string msg = schema_error([&] { RunData::load(dir); });
  EXPECT_NE(msg.find("bad.json"), std::string::npos) << msg;
  fs::remove_all(dir);
}

namespace cb::harness {
namespace {

TEST(MetricKeyRule, NamesFromElsewhereBecomeSegments) {
  EXPECT_EQ(metric_key_segments("rt-service"), "rt_service");
  EXPECT_EQ(metric_key_segments("queue-table"), "queue_table");
  EXPECT_EQ(metric_key_segments("matmul/cpu/f32/K2048_N2048/M1"), "matmul.cpu.f32.K2048_N2048.M1");
}

}  // namespace
}  // namespace cb::harness
