#pragma once
// Runs the Catch2 session of the test executable (defined in catch_runner.cpp, Catch2's one
// implementation unit, since Catch::Session is declared only there).
int cluscomp_test_run_catch(int argc, char* argv[]);
