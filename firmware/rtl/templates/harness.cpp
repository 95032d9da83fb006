// Batch harness for @TOP@: generated, do not edit.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>
#include "verilated.h"
#include "V@TOP@.h"

static const size_t N_IN = @N_IN@, N_OUT = @N_OUT@;
static const size_t IN_BW = @IN_BW@, OUT_BW = @OUT_BW@;
static const size_t IN_WORDS = @IN_WORDS@, OUT_WORDS = @OUT_WORDS@;
static const size_t LATENCY = @LATENCY@;

// element i of the input at bits [i*IN_BW, (i+1)*IN_BW)
static void pack(const int32_t* codes, uint32_t* words) {
    std::memset(words, 0, sizeof(uint32_t) * IN_WORDS);
    const uint64_t mask = (IN_BW == 64) ? ~0ull : ((1ull << IN_BW) - 1);
    for (size_t i = 0; i < N_IN; ++i) {
        uint64_t v = (uint64_t)(uint32_t)codes[i] & mask;
        size_t bit = i * IN_BW, w = bit >> 5, off = bit & 31;
        words[w] |= (uint32_t)(v << off);
        if (off + IN_BW > 32) words[w + 1] |= (uint32_t)(v >> (32 - off));
    }
}

static void unpack(const uint32_t* words, uint64_t* out) {
    for (size_t j = 0; j < N_OUT; ++j) {
        size_t bit = j * OUT_BW, w = bit >> 5, off = bit & 31;
        unsigned __int128 v = (unsigned __int128)words[w] | ((unsigned __int128)words[w + 1] << 32)
                            | ((unsigned __int128)words[w + 2] << 64);
        v >>= off;
        out[j] = (uint64_t)v & ((OUT_BW == 64) ? ~0ull : ((1ull << OUT_BW) - 1));
    }
}

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s inputs.bin outputs.bin\n", argv[0]);
        return 2;
    }
    FILE* fin = std::fopen(argv[1], "rb");
    if (!fin) { std::fprintf(stderr, "cannot open %s\n", argv[1]); return 2; }
    std::fseek(fin, 0, SEEK_END);
    long size = std::ftell(fin);
    std::fseek(fin, 0, SEEK_SET);
    if (size < 0 || size % (long)(sizeof(int32_t) * N_IN) != 0) {
        std::fprintf(stderr, "%s: size %ld is not a multiple of one event\n", argv[1], size);
        return 2;
    }
    size_t n = (size_t)size / (sizeof(int32_t) * N_IN);
    std::vector<int32_t> in(n * N_IN + 1);
    if (n && std::fread(in.data(), sizeof(int32_t), n * N_IN, fin) != n * N_IN) {
        std::fprintf(stderr, "short read on %s\n", argv[1]);
        return 2;
    }
    std::fclose(fin);

    auto ctx = std::make_unique<VerilatedContext>();
    auto dut = std::make_unique<V@TOP@>(ctx.get());
    std::vector<uint32_t> inw(IN_WORDS), outw(OUT_WORDS);
    std::vector<uint64_t> out(n * N_OUT + 1);
    @INIT@
    for (size_t t = 0; t < @LOOP_END@; ++t) {
        if (t < n) {
            pack(&in[t * N_IN], inw.data());
            @TO_PORT@
        }@STEP@
    }
    dut->final();

    FILE* fout = std::fopen(argv[2], "wb");
    if (!fout || (n && std::fwrite(out.data(), sizeof(uint64_t), n * N_OUT, fout) != n * N_OUT)) {
        std::fprintf(stderr, "cannot write %s\n", argv[2]);
        return 2;
    }
    std::fclose(fout);
    return 0;
}
