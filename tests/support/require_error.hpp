#pragma once
// One way for every test to check "this call fails with a clear error": the call throws
// cluscomp::Error with the expected StatusCode, and its message contains `needle` (the name of the
// bad value, file or setting), which is printed on failure.
#include <catch2/catch.hpp>

#include <string>

#include "cluscomp/core/error.hpp"

namespace cluscomp_test {

template <class F>
void require_error(F&& f, cluscomp::StatusCode code, const std::string& needle) {
  try {
    f();
    FAIL("no error; expected one mentioning '" << needle << "'");
  } catch (const cluscomp::Error& e) {
    INFO("message: " << e.what());
    CHECK(e.code() == code);
    CHECK(std::string(e.what()).find(needle) != std::string::npos);
  }
}

}  // namespace cluscomp_test
