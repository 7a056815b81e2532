using TorchSharp;
using TorchSharp.Modules;
using VptSharp.Backbones;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using static VptSharp.Tests.TestUtil;
namespace VptSharp.Tests;
// Probe of libtorch channels-last convolutions against NCHW (see docs/results/resnet18-vs-mlnet.md). Needs
// VptSharp.Backbones.ChannelsLast from the channels-last patch; not part of the test suite.
public class ChannelsLastProbe
{
    static Tensor Gemm1x1(Tensor x, Tensor w, int s)
    {
        var xs = s == 1 ? x : x[.., .., TensorIndex.Slice(null, null, s), TensorIndex.Slice(null, null, s)];
        var y = xs.permute(0, 2, 3, 1).matmul(w.flatten(1).t());
        return y.permute(0, 3, 1, 2);
    }
    [Theory]
    [InlineData("f32")]
    [InlineData("bf16")]
    public void Probe(string which)
    {
        using var _ = no_grad();
        manual_seed(0);
        var dt = which == "f32" ? float32 : bfloat16;
        int bad = 0;
        foreach (var (cin, cout) in new[] { (3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 512), (512, 512), (64, 256), (256, 64), (512, 128), (1024, 256), (1024, 2048), (2048, 512) })
        foreach (var hw in new[] { 7, 8, 14, 15, 28, 29, 56, 57, 112 })
        foreach (var (k, s, p) in new[] { (1, 1, 0), (1, 2, 0), (3, 1, 1), (3, 2, 1), (3, 2, 0), (7, 2, 3), (7, 2, 0) })
        {
            if (hw * hw * cin > 56 * 56 * 256) continue;
            if (k == 7 && cin != 3) continue;
            File.AppendAllText("/tmp/probe.log", $"{which} {cin}->{cout} {hw}px k{k}s{s}p{p}\n");
            using var sc = NewDisposeScope();
            var x = randn(2, cin, hw, hw).to(dt);
            var w = (randn(cout, cin, k, k) * (1.0 / Math.Sqrt(cin * k * k))).to(dt);
            var refy = functional.conv2d(x.to(float32), w.to(float32), strides: [s, s], padding: [p, p]);
            double mag = refy.abs().max().item<float>();
            double tol = (dt == float32 ? 1e-4 : 0.03) * Math.Max(mag, 1);
            double dcl = MaxAbsDiff(functional.conv2d(ChannelsLast.Of(x), ChannelsLast.Of(w), strides: [s, s], padding: [p, p]).to(float32), refy);
            double dg = k == 1 ? MaxAbsDiff(Gemm1x1(ChannelsLast.Of(x), w, s).to(float32), refy) : 0;
            if (dcl > tol || dg > tol) { bad++; File.AppendAllText("/tmp/probe.log", $"PROBE BAD {which} {cin}->{cout} {hw}px k{k}s{s}p{p}: CL {dcl:E2} gemm {dg:E2} |y| {mag:F1}\n"); }
        }
        Console.WriteLine($"PROBE {which} done, {bad} bad");
    }
}
