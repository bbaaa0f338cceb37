// The one Catch2 main shared by every CPU test executable (Catch2 itself is catch_runner.cpp).
#include <catch2/catch.hpp>

int main(int argc, char* argv[]) { return Catch::Session().run(argc, argv); }
