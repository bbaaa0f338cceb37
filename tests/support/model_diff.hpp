#pragma once
// Checks shared by the training tests (calibrate, recover, finetune): what changed between a
// cluscomp-format student and a trained output.
#include <catch2/catch.hpp>

#include <vector>

#include "cluscomp/io/cluscomp_format.hpp"

namespace cluscomp_test {

/// CHECKs that `after` has the same clustered matrices as `before` (shapes, dtypes, codes) and the
/// same dense tensors byte for byte, and returns how many clustered matrices' centroids differ.
inline int changed_codebooks_only_centroids(const cluscomp::CluscompModel& before, const cluscomp::CluscompModel& after) {
  REQUIRE(before.clustered.size() == after.clustered.size());
  int changed = 0;
  for (const auto& kv : before.clustered) {
    INFO(kv.first);
    REQUIRE(after.clustered.count(kv.first) == 1);
    const cluscomp::CodebookTensor& a = after.clustered.at(kv.first);
    CHECK(a.shape() == kv.second.shape());
    CHECK(a.code_words() == kv.second.code_words());
    changed += a.centroid_bytes() != kv.second.centroid_bytes();
  }
  REQUIRE(before.dense.size() == after.dense.size());
  for (size_t i = 0; i < before.dense.size(); ++i) {
    INFO(before.dense[i].name);
    CHECK(before.dense[i].name == after.dense[i].name);
    CHECK(before.dense[i].dtype == after.dense[i].dtype);
    CHECK(std::vector<unsigned char>(before.dense[i].data, before.dense[i].data + before.dense[i].nbytes) ==
          std::vector<unsigned char>(after.dense[i].data, after.dense[i].data + after.dense[i].nbytes));
  }
  return changed;
}

}  // namespace cluscomp_test
