// Lossless batch testbench of the Smart Pixels firmware project.
//
// Binary mode (what `smartpix csim` runs, compiled with g++):
//     ./csim INPUTS.f32 OUTPUTS.f64 [TRACE.f64]
//   INPUTS.f32   float32 values, N_EVENTS x @N_IN@ (the fixed-point inputs, exact in float32)
//   OUTPUTS.f64  float64 values, N_EVENTS x @N_OUT@ (every output fixed-point value, exact)
//   TRACE.f64    optional: every traced layer's output per event, float64, in the order of
//                TRACE.f64.index ("name size" per line)
// Text mode (no arguments; what a vendor tool's C simulation runs): reads
// tb_data/tb_input_features.dat and writes tb_data/csim_results.log with 17 significant digits,
// which round-trips every value of a type up to 53 bits wide.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

@PRELUDE@
#include "firmware/@PROJECT@.h"
#include "firmware/nnet_utils/nnet_helpers.h"

@GLOBALS@

namespace nnet {
bool trace_enabled = false;
std::map<std::string, void *> *trace_outputs = NULL;
size_t trace_type_size = sizeof(double);
} // namespace nnet

namespace smartpix_tb {

static const size_t N_IN = @N_IN@;
static const size_t N_OUT = @N_OUT@;

template <class res_T, size_t SIZE> void collect(res_T result[SIZE], std::vector<double> &out) {
    for (size_t i = 0; i < SIZE; i++)
        out.push_back(result[i].to_double());
}

template <class res_T, size_t SIZE, class Stream> void collect_stream(Stream &result, std::vector<double> &out) {
    for (size_t i = 0; i < SIZE / res_T::size; i++) {
        res_T pack = result.read();
        for (size_t j = 0; j < res_T::size; j++)
            out.push_back(pack[j].to_double());
    }
}

struct Trace {
    std::vector<std::string> names;
    std::vector<size_t> sizes;
    std::vector<std::vector<double> > buffers;
    std::map<std::string, void *> pointers;

    void add(const std::string &name, size_t size) {
        names.push_back(name);
        sizes.push_back(size);
    }
    void allocate() {
        buffers.resize(names.size());
        for (size_t i = 0; i < names.size(); i++) {
            buffers[i].assign(sizes[i], 0.0);
            pointers[names[i]] = buffers[i].data();
        }
    }
};

// Run the firmware on one event; `in` holds N_IN input values.
static void infer(std::vector<float> &in, std::vector<double> &out) {
    // clang-format off
@DATA@
@CALL@
@COLLECT@
    // clang-format on
}

static int run_binary(const char *input_path, const char *output_path, const char *trace_path) {
    FILE *fin = std::fopen(input_path, "rb");
    if (!fin) {
        std::fprintf(stderr, "cannot open input file %s\n", input_path);
        return 2;
    }
    FILE *fout = std::fopen(output_path, "wb");
    if (!fout) {
        std::fprintf(stderr, "cannot open output file %s\n", output_path);
        return 2;
    }
    Trace trace;
    FILE *ftrace = NULL;
    if (trace_path) {
@TRACE_LAYERS@
        trace.allocate();
        nnet::trace_outputs = &trace.pointers;
        nnet::trace_enabled = true;
        ftrace = std::fopen(trace_path, "wb");
        std::ofstream index((std::string(trace_path) + ".index").c_str());
        for (size_t i = 0; i < trace.names.size(); i++)
            index << trace.names[i] << " " << trace.sizes[i] << "\n";
    }
    std::vector<float> in(N_IN);
    std::vector<double> out;
    out.reserve(N_OUT);
    size_t events = 0;
    while (std::fread(in.data(), sizeof(float), N_IN, fin) == N_IN) {
        out.clear();
        infer(in, out);
        if (out.size() != N_OUT) {
            std::fprintf(stderr, "event %zu: the firmware produced %zu outputs, expected %zu\n", events, out.size(), N_OUT);
            return 3;
        }
        std::fwrite(out.data(), sizeof(double), N_OUT, fout);
        if (ftrace)
            for (size_t i = 0; i < trace.buffers.size(); i++)
                std::fwrite(trace.buffers[i].data(), sizeof(double), trace.sizes[i], ftrace);
        events++;
    }
    std::fclose(fin);
    if (std::fclose(fout) != 0 || (ftrace && std::fclose(ftrace) != 0)) {
        std::fprintf(stderr, "could not write the results\n");
        return 2;
    }
    return 0;
}

static int run_text() {
    std::ifstream fin("tb_data/tb_input_features.dat");
    if (!fin.is_open()) {
        std::cerr << "cannot open tb_data/tb_input_features.dat" << std::endl;
        return 2;
    }
    std::ofstream fout("tb_data/csim_results.log");
    std::string line;
    std::vector<float> in;
    std::vector<double> out;
    size_t events = 0;
    while (std::getline(fin, line)) {
        std::istringstream values(line);
        in.clear();
        double v;
        while (values >> v)
            in.push_back((float)v);
        if (in.size() != N_IN) {
            std::cerr << "line " << events + 1 << ": " << in.size() << " values, expected " << N_IN << std::endl;
            return 2;
        }
        out.clear();
        infer(in, out);
        char buffer[32];
        for (size_t i = 0; i < out.size(); i++) {
            std::snprintf(buffer, sizeof(buffer), "%.17g", out[i]);
            fout << buffer << (i + 1 < out.size() ? " " : "\n");
        }
        events++;
    }
    std::cout << "INFO: wrote " << events << " events to tb_data/csim_results.log" << std::endl;
    return 0;
}

} // namespace smartpix_tb

int main(int argc, char **argv) {
    if (argc >= 3)
        return smartpix_tb::run_binary(argv[1], argv[2], argc >= 4 ? argv[3] : NULL);
    return smartpix_tb::run_text();
}
