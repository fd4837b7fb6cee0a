// What a result was measured on and with: commit, build, hardware fingerprint.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace cb::harness {

// {"commit", "commit_dirty", "build_type", "compiler", "cuda_built"}
nlohmann::json build_info();
// {"cpu_model", "cpu_vendor", "cpu_family", "cpu_model_id", "cpu_stepping", "cpu_microcode" (empty
//  where a hypervisor hides it), "cpu_flags" (the ISA extensions that matter here), "hypervisor"
//  (CPUID signature, "none" on bare metal), "cores" (physical), "threads" (logical CPUs online),
//  "memory_bytes", "os", "hostname", "gpus": [...], "driver", "cuda_version", "nccl_version",
//  "fingerprint_fields", "fingerprint"} — GPU fields come from nvidia-smi when present.
nlohmann::json hardware_info();
// The fields that define a machine class: CPU vendor, model name, family, model, stepping,
// microcode, ISA flags, core and thread counts, hypervisor, GPU names. Kernel speed ratios move
// with any of them (a newer CPU generation can share a model name such as "AMD EPYC").
nlohmann::json fingerprint_fields(const nlohmann::json& hw);
// A short stable id of the machine class (hash of fingerprint_fields): baselines are only used on
// a machine with the same id.
std::string hardware_fingerprint(const nlohmann::json& hw);
// One line for messages: "AMD EPYC (AuthenticAMD family 26 model 2 stepping 1), 2 cores / 2 threads, hypervisor KVMKVMKVM".
std::string describe_machine_class(const nlohmann::json& hw);
// UTC timestamp "2026-11-29T07:20:00Z".
std::string utc_now_iso();

}  // namespace cb::harness
