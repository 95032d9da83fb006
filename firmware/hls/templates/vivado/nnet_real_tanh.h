#ifndef NNET_REAL_TANH_H_
#define NNET_REAL_TANH_H_

// QKeras' quantized_tanh(use_real_tanh=True), exact: CONFIG_T::step compares one input with the
// layer's thresholds, written on the input's own grid (firmware/hls/passes.py).

#include "hls_stream.h"
#include "nnet_common.h"
#include "nnet_types.h"

namespace nnet {

template <class data_T, class res_T, typename CONFIG_T>
void real_tanh(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_in]) {
    #pragma HLS PIPELINE
    for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
        #pragma HLS UNROLL
        res[i] = CONFIG_T::template step<data_T, res_T>(data[i]);
    }
}

template <class data_T, class res_T, typename CONFIG_T>
void real_tanh(hls::stream<data_T> &data, hls::stream<res_T> &res) {
RealTanhLoop:
    for (unsigned i = 0; i < CONFIG_T::n_in / res_T::size; i++) {
        #pragma HLS PIPELINE
        data_T in_data = data.read();
        res_T out_data;
        PRAGMA_DATA_PACK(out_data)
    RealTanhPackLoop:
        for (unsigned j = 0; j < res_T::size; j++) {
            #pragma HLS UNROLL
            out_data[j] = CONFIG_T::template step<typename data_T::value_type, typename res_T::value_type>(in_data[j]);
        }
        res.write(out_data);
    }
}

} // namespace nnet

#endif
