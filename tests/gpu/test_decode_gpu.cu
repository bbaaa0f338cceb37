// GPU decode (decode_dense_gpu, W and Wt) against reference::decode_dense_ref, bit for bit, for
// every centroid type of the list, several code widths, S > 1 and padded outputs; and the Status
// of bad arguments. The GPU main skips (exit 77) without a CUDA device. Times nothing.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cluscomp/codebook/codebook_tensor.hpp"
#include "cluscomp/codebook/configs.hpp"
#include "cluscomp/cuda/decode.cuh"
#include "cluscomp/reference/codebook_ref.hpp"
#include "support/codebook_data.hpp"
#include "support/gpu_test.cuh"

using namespace cluscomp;
using cluscomp_test::DeviceBuffer;
using cluscomp_test::describe;
using cluscomp_test::make_shape;
using cluscomp_test::random_tensor;

namespace {

// A tensor's centroids and codes copied to the device, and its untyped device view. The
// centroids start `shift` bytes into their buffer: a shift that is not a multiple of the vector
// load makes the launcher take the generic kernels instead of the specialised ones.
struct DeviceCodebook {
  DeviceBuffer<unsigned char> centroids;
  DeviceBuffer<uint32_t> codes;
  AnyCodebookView view;
  explicit DeviceCodebook(const CodebookTensor& t, size_t shift = 0)
      : centroids(t.centroid_bytes().size() + shift),
        codes(t.code_words().data(), t.code_words().size()),
        view(make_any_codebook_view(t.shape(), centroids.get() + shift, codes.get())) {
    CLUSCOMP_CUDA_REQUIRE(cudaMemcpy(centroids.get() + shift, t.centroid_bytes().data(),
                                     t.centroid_bytes().size(), cudaMemcpyHostToDevice));
  }
};

// How the output and the table are laid out for one check: the row pitch's padding (5: rows not
// 16-byte aligned; kAlignedPad: the pitch a multiple of 4 floats, so Wt takes float4 stores where
// d % 4 == 0) and the table's byte shift (0: aligned).
constexpr int64_t kAlignedPad = -1;
struct Layout {
  int64_t pad = 5;
  size_t shift = 0;
};

// Decodes on the device (reference W of `t` given) into a strided buffer (row_stride = cols + pad, col_stride 1, gaps filled
// with a sentinel byte pattern) and compares with the reference; the gaps must stay untouched.
void check_gpu_decode(const CodebookTensor& t, const std::vector<double>& ref, DecodeLayout layout,
                      cudaStream_t stream, Layout lay = {}) {
  const CodebookShape& sh = t.shape();
  const bool w = layout == DecodeLayout::kW;
  const int64_t rows = w ? sh.out : sh.in, cols = w ? sh.in : sh.out;
  const int64_t pad = lay.pad == kAlignedPad ? 4 + (4 - cols % 4) % 4 : lay.pad, rs = cols + pad;
  INFO(describe(sh) << " layout=" << decode_layout_name(layout) << " row_stride=" << rs << " shift=" << lay.shift);
  DeviceCodebook dc(t, lay.shift);
  DeviceBuffer<float> out(static_cast<size_t>(rows * rs));
  out.fill_bytes(0x7f);  // 0x7f7f7f7f: a finite float no centroid of these tests decodes to in a gap check
  DecodeGpuArgs args;
  args.codebook = dc.view;
  args.output = MatrixView<float>{out.get(), rows, cols, rs, 1};
  args.layout = layout;
  REQUIRE(decode_workspace_size(args) == 0);
  const Status s = decode_dense_gpu(args, stream);
  INFO(s.to_string());
  REQUIRE(s.ok());
  CLUSCOMP_CUDA_REQUIRE(cudaStreamSynchronize(stream));
  const std::vector<float> host = out.download();
  std::string first;
  const int64_t bad = cluscomp_test::count_mismatches(ref, sh.out, sh.in, !w,
                                                      MatrixView<const float>{host.data(), rows, cols, rs, 1}, &first);
  if (bad != 0) FAIL(bad << " mismatches, first " << first);
  uint32_t gap_bits = 0;
  int64_t touched = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = cols; c < rs; ++c) {
      std::memcpy(&gap_bits, &host[static_cast<size_t>(r * rs + c)], 4);
      if (gap_bits != 0x7f7f7f7fu) ++touched;
    }
  REQUIRE(touched == 0);
}

}  // namespace

TEST_CASE("GPU decode matches decode_dense_ref bit for bit for every configuration", "[gpu][decode]") {
  cudaStream_t stream;
  CLUSCOMP_CUDA_REQUIRE(cudaStreamCreate(&stream));
  std::mt19937_64 rng(777);
  int cases = 0;
  const int widths[] = {1, 2, 3, 4, 5, 7, 8, 11, 13, 15, 16};
  const int ds[] = {1, 3, 4, 8, 16, 2};
  const int ss[] = {1, 3, 7};
  for_each_type(CentroidTypes{}, [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (int bits : widths) {
      const int64_t full = int64_t{1} << bits;
      std::vector<int64_t> ks = {full};
      if (bits >= 3) ks.push_back(full - 3);  // a non-power of two
      for (int64_t k : ks)
        for (int di = 0; di < 6; ++di)
          for (int si = 0; si < 3; ++si) {
            if (bits > 11 && (di + si) % 3 != 0) continue;  // wide codebooks are large
            const int64_t out = (cases % 3 == 0) ? 5 : (cases % 3 == 1 ? 37 : 48);  // 5, 37: padded
            const int64_t in = 9 + (cases % 5);
            const CodebookTensor t =
                random_tensor(make_shape(out, in, ds[di], k, ss[si], bits, centroid_dtype_of<T>), rng);
            const std::vector<double> ref = reference::decode_dense_ref(t);
            for (const Layout lay : {Layout{}, Layout{kAlignedPad, 0}, Layout{kAlignedPad, sizeof(T)}}) {
              check_gpu_decode(t, ref, DecodeLayout::kW, stream, lay);
              check_gpu_decode(t, ref, DecodeLayout::kWt, stream, lay);
            }
            ++cases;
          }
    }
  });
  REQUIRE(cases > 200);
  CLUSCOMP_CUDA_REQUIRE(cudaStreamDestroy(stream));
}

TEST_CASE("GPU decode of a larger matrix with many blocks", "[gpu][decode]") {
  std::mt19937_64 rng(4242);
  // 1001 x 3000, d = 4: 753k vectors, ~2900 blocks; three codebooks; 13-bit codes; default stream.
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16}) {
    const CodebookTensor t = random_tensor(make_shape(1001, 3000, 4, 5000, 3, 0, dt), rng);
    const std::vector<double> ref = reference::decode_dense_ref(t);
    check_gpu_decode(t, ref, DecodeLayout::kW, nullptr);
    check_gpu_decode(t, ref, DecodeLayout::kWt, nullptr);
    check_gpu_decode(t, ref, DecodeLayout::kWt, nullptr, Layout{kAlignedPad, 0});
  }
  // The specialised kernels' tiles (32 input columns x 64 output rows) cut by the matrix edges,
  // codebook boundaries inside a tile, and rows that end in a partial vector (out % d != 0).
  for (int d : {2, 4, 8, 16})
    for (const int64_t out : {int64_t{64}, int64_t{150}, int64_t{203}})
      for (const int64_t in : {int64_t{32}, int64_t{70}}) {
        const CodebookTensor t = random_tensor(make_shape(out, in, d, 300, 3, 0, DType::kBF16), rng);
        const std::vector<double> ref = reference::decode_dense_ref(t);
        for (const Layout lay : {Layout{}, Layout{kAlignedPad, 0}}) {
          check_gpu_decode(t, ref, DecodeLayout::kW, nullptr, lay);
          check_gpu_decode(t, ref, DecodeLayout::kWt, nullptr, lay);
        }
      }
}

TEST_CASE("GPU decode refuses bad arguments with a Status naming them", "[gpu][decode][status]") {
  std::mt19937_64 rng(1);
  const CodebookTensor t = random_tensor(make_shape(10, 6, 4, 7, 2, 0, DType::kF16), rng);
  DeviceCodebook dc(t);
  DeviceBuffer<float> out(60);
  DecodeGpuArgs good;
  good.codebook = dc.view;
  good.output = make_matrix_view(out.get(), 10, 6);
  good.layout = DecodeLayout::kW;
  REQUIRE(decode_dense_gpu(good, nullptr).ok());
  CLUSCOMP_CUDA_REQUIRE(cudaDeviceSynchronize());

  DecodeGpuArgs a = good;
  a.layout = DecodeLayout::kWt;  // output still (10, 6)
  const Status shape = decode_dense_gpu(a, nullptr);
  REQUIRE(shape.code() == StatusCode::kInvalidArgument);
  REQUIRE(shape.message().find("expected (6, 10)") != std::string::npos);

  a = good;
  a.codebook.centroid_dtype = DType::kF64;
  const Status dtype = decode_dense_gpu(a, nullptr);
  REQUIRE(dtype.code() == StatusCode::kUnsupported);
  REQUIRE(dtype.message().find("decode_dense_gpu: centroid dtype F64") != std::string::npos);

  a = good;
  a.codebook.codes = nullptr;
  REQUIRE(decode_dense_gpu(a, nullptr).code() == StatusCode::kInvalidArgument);
  a = good;
  a.codebook.d = 17;
  REQUIRE(decode_dense_gpu(a, nullptr).code() == StatusCode::kInvalidArgument);
  a = good;
  a.output.data = nullptr;
  REQUIRE(decode_dense_gpu(a, nullptr).code() == StatusCode::kInvalidArgument);
  a = good;
  a.layout = static_cast<DecodeLayout>(9);
  REQUIRE(decode_dense_gpu(a, nullptr).message().find("unknown layout 9") != std::string::npos);

  // kCudaError path: an error pending in the runtime when the launch is checked comes back as
  // kCudaError naming the kernel (and is consumed, as cudaGetLastError does).
  void* huge = nullptr;
  REQUIRE(cudaMalloc(&huge, size_t{1} << 62) != cudaSuccess);
  // (nvcc's front end flags `s = f()` on a [[nodiscard]] class, hence a fresh variable each time.)
  const Status pending = decode_dense_gpu(good, nullptr);
  INFO(pending.to_string());
  REQUIRE(pending.code() == StatusCode::kCudaError);
  REQUIRE(pending.message().find("decode_dense_w_tiled_kernel<F16>") != std::string::npos);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  CLUSCOMP_CUDA_REQUIRE(cudaDeviceSynchronize());
}
