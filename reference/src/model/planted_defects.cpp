#include "cb/engine/model/planted_defects.h"

#include <cstdlib>
#include <stdexcept>

namespace cb::engine {

const char* defect_name(Defect d) {
  switch (d) {
    case Defect::BatchIgnoresQueue: return "batch-ignores-queue";
    case Defect::KvReserveMax: return "kv-reserve-max";
    case Defect::BusyLoop: return "busy-loop";
    case Defect::DensePruned: return "dense-pruned";
    case Defect::AnswerCache: return "answer-cache";
    case Defect::SlowSampling: return "slow-sampling";
    case Defect::MatmulTwice: return "matmul-twice";
    case Defect::KvScatter: return "kv-scatter";
  }
  return "?";
}

const std::vector<std::string>& known_defect_names() {
  static const std::vector<std::string> names = {defect_name(Defect::BatchIgnoresQueue), defect_name(Defect::KvReserveMax),
                                                 defect_name(Defect::BusyLoop), defect_name(Defect::DensePruned),
                                                 defect_name(Defect::AnswerCache), defect_name(Defect::SlowSampling),
                                                 defect_name(Defect::MatmulTwice), defect_name(Defect::KvScatter)};
  return names;
}

std::vector<std::string> parse_defect_list(const std::string& csv) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= csv.size()) {
    const size_t comma = csv.find(',', start);
    const std::string name = csv.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!name.empty()) {
      bool known = false;
      for (const auto& k : known_defect_names()) known = known || k == name;
      if (!known) {
        std::string list;
        for (const auto& k : known_defect_names()) list += (list.empty() ? "" : ", ") + k;
        throw std::invalid_argument("planted defect '" + name + "' is not known (known: " + list + ")");
      }
      out.push_back(name);
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

std::vector<std::string> planted_defect_names() {
  static const std::vector<std::string> names = [] {
    const char* env = std::getenv("CB_PLANT_DEFECTS");
    return env ? parse_defect_list(env) : std::vector<std::string>{};
  }();
  return names;
}

bool planted(Defect d) {
  for (const auto& n : planted_defect_names())
    if (n == defect_name(d)) return true;
  return false;
}

}  // namespace cb::engine
