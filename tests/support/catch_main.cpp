// The one Catch2 main shared by every CPU test executable (Catch2 itself is catch_runner.cpp).
#include "support/catch_runner.hpp"

int main(int argc, char* argv[]) { return cluscomp_test_run_catch(argc, argv); }
