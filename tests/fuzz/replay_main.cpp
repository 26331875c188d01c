// replay_main.cpp: a main for a fuzz target that feeds it each input named
// on the command line once, the way `NAME_fuzz FILE...` does under
// libFuzzer. `make test` links every tests/fuzz/NAME_fuzz.cpp with it
// (g++, AddressSanitizer and UndefinedBehaviorSanitizer, like the unit
// tests) to replay the corpora: tests/fuzz/test_corpora.sh. Fuzzing itself
// is libFuzzer's (`make fuzz`).
//
// Prints "Running: FILE" before each input, as libFuzzer does, so the
// script can count what ran. Arguments that start with '-' are libFuzzer
// flags and are ignored. A finding aborts the process (the sanitizers are
// built not to recover; a target's own check aborts too); an input that
// cannot be read exits 1.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

// libFuzzer's mutator, which a target's custom mutator calls. A replay
// never mutates: the symbol is here only so such a target links.
extern "C" size_t LLVMFuzzerMutate(uint8_t*, size_t, size_t) {
  std::fprintf(stderr, "replay: LLVMFuzzerMutate called during a replay\n");
  std::abort();
}

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (argv[i][0] == '-') continue;
    std::ifstream in(argv[i], std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "replay: cannot read %s\n", argv[i]);
      return 1;
    }
    const std::vector<char> bytes{std::istreambuf_iterator<char>(in), {}};
    std::printf("Running: %s\n", argv[i]);
    std::fflush(stdout);
    // An empty input still runs, with a pointer that is not null, as
    // libFuzzer passes one.
    static const uint8_t kEmpty = 0;
    LLVMFuzzerTestOneInput(bytes.empty() ? &kEmpty : reinterpret_cast<const uint8_t*>(bytes.data()),
                           bytes.size());
  }
  return 0;
}
