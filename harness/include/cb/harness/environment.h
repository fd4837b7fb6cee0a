// What a result was measured on and with: commit, build, hardware fingerprint.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace cb::harness {

// {"commit", "commit_dirty", "build_type", "compiler", "cuda_built"}
nlohmann::json build_info();
// {"cpu_model", "cpu_flags" (the ISA extensions that matter here), "cores", "threads",
//  "memory_bytes", "os", "hostname", "gpus": [...], "driver", "cuda_version", "nccl_version",
//  "fingerprint"} — GPU fields come from nvidia-smi when present, else gpus is empty.
nlohmann::json hardware_info();
// A short stable id of the hardware (hash of cpu model, cores, memory, gpus): runs on the same
// machine class share it, so baselines can be picked per machine class.
std::string hardware_fingerprint(const nlohmann::json& hw);
// UTC timestamp "2026-11-29T07:20:00Z".
std::string utc_now_iso();

}  // namespace cb::harness
