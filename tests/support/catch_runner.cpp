// Catch2's implementation, compiled once for every test executable: catch_main.cpp (CPU tests) and
// gpu_catch_main.cpp (GPU tests) add only their main().
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "support/catch_runner.hpp"

int cluscomp_test_run_catch(int argc, char* argv[]) { return Catch::Session().run(argc, argv); }
