using System.Collections.Concurrent;
using TorchSharp;
using TorchSharp.Modules;
using VptSharp.Hardware;
using VptSharp.Tuning;
using static TorchSharp.torch;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

/// <summary>Precision chosen by the hardware (issue 17), and bf16 training that really computes in bf16.</summary>
public class PrecisionTests
{
    // Abridged /proc/cpuinfo texts of real CPU kinds: the flags are what matters.
    const string Zen4 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14 96-Core Processor\n" +
                        "flags\t\t: fpu sse2 avx fma avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16 avx512_vnni\n\n" +
                        "processor\t: 1\nmodel name\t: AMD EPYC 9R14 96-Core Processor\nflags\t\t: fpu sse2 avx fma avx2 avx512f avx512_bf16\n";
    const string Avx2Only = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx fma avx2 bmi2\n";
    const string SapphireRapids = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8488C\nflags\t\t: avx2 avx512f avx512_fp16 amx_bf16 amx_tile amx_int8\n";
    const string Skylake = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6148\nflags\t\t: avx2 avx512f avx512dq avx512bw avx512vl\n";

    [Fact]
    public void CpuFeaturesReadTheFlagsLine()
    {
        var zen4 = CpuFeatures.Parse(Zen4);
        Assert.Equal("AMD EPYC 9R14 96-Core Processor", zen4.Model);
        Assert.True(zen4.Avx2 && zen4.Avx512F && zen4.Avx512Bf16 && !zen4.AmxBf16 && zen4.FastBf16);
        Assert.Equal("avx2 avx512f avx512_bf16", zen4.VectorExtensions);
        var avx2 = CpuFeatures.Parse(Avx2Only);
        Assert.True(avx2.Avx2 && !avx2.Avx512F && !avx2.FastBf16);
        Assert.Equal("avx2", avx2.VectorExtensions);
        Assert.True(CpuFeatures.Parse(SapphireRapids).FastBf16); // AMX alone counts
        Assert.False(CpuFeatures.Parse(Skylake).FastBf16);        // AVX-512 without its bf16 instructions does not
        Assert.Equal("no AVX2", CpuFeatures.Parse("model name : x\n").VectorExtensions);
    }

    [Fact]
    public void AutoPicksBf16OnlyWithBf16HardwareAndAFrozenBackbone()
    {
        Precision Auto(string cpu, bool frozen = true, DeviceType dev = DeviceType.CPU, double? cc = null) =>
            PrecisionPolicy.Resolve(Precision.Auto, frozen, dev, CpuFeatures.Parse(cpu), cc).Precision;
        Assert.Equal(Precision.Bf16, Auto(Zen4));
        Assert.Equal(Precision.Bf16, Auto(SapphireRapids));
        Assert.Equal(Precision.Fp32, Auto(Avx2Only));  // bf16 GEMMs are ~8× slower than fp32 there: never the default
        Assert.Equal(Precision.Fp32, Auto(Skylake));
        Assert.Equal(Precision.Fp32, Auto(Zen4, frozen: false)); // a trained backbone weight needs a float32 master copy
        Assert.Equal(Precision.Bf16, Auto(Avx2Only, dev: DeviceType.CUDA, cc: 8.6));
        Assert.Equal(Precision.Fp32, Auto(Zen4, dev: DeviceType.CUDA, cc: 7.5));
        Assert.Equal(Precision.Fp32, Auto(Zen4, dev: DeviceType.CUDA, cc: null));
        Assert.Contains("avx512_bf16", PrecisionPolicy.Resolve(Precision.Auto, true, DeviceType.CPU, CpuFeatures.Parse(Zen4)).Reason);

        // Asked for by name: kept (with the warning on a CPU without bf16), except where it cannot be right.
        var forced = PrecisionPolicy.Resolve(Precision.Bf16, true, DeviceType.CPU, CpuFeatures.Parse(Avx2Only));
        Assert.Equal(Precision.Bf16, forced.Precision);
        Assert.Contains("slow here", forced.Reason);
        Assert.Equal(Precision.Fp32, PrecisionPolicy.Resolve(Precision.Fp32, true, DeviceType.CPU, CpuFeatures.Parse(Zen4)).Precision);
        Assert.Throws<ArgumentException>(() => PrecisionPolicy.Resolve(Precision.Bf16, false, DeviceType.CPU, CpuFeatures.Parse(Zen4)));

        Assert.Equal(Precision.Bf16, PrecisionPolicy.Parse("bfloat16"));
        Assert.Equal(Precision.Fp32, PrecisionPolicy.Parse("FP32"));
        Assert.Contains("use auto, fp32 or bf16", Assert.Throws<ArgumentException>(() => PrecisionPolicy.Parse("fp16")).Message);
    }

    [Fact]
    public void DeviceAutoIsTheCpuWithoutCuda()
    {
        Assert.False(cuda.is_available()); // this build references the CPU runtime
        Assert.Equal("cpu", ComputeDevice.Resolve("auto"));
        Assert.Equal(DeviceType.CPU, VptSharp.Devices.Parse("auto").type);
        Assert.Equal("cuda:1", ComputeDevice.Resolve("cuda:1"));
        Assert.Equal(8.6, ComputeDevice.ParseComputeCapability("8.6\n"));
        Assert.Null(ComputeDevice.ParseComputeCapability("[N/A]"));
    }

    [Fact]
    public void ApplyPrecisionCastsTheBackboneOnceAndKeepsTrainedTensorsFloat32()
    {
        using var vit = TinyVit(3);
        using var model = PromptedModel.Create(vit, new PromptConfig { Tokens = 2 }, 3);
        var choice = model.ApplyPrecision(Precision.Auto, DeviceType.CPU, CpuFeatures.Parse(Zen4));
        Assert.Equal(Precision.Bf16, choice.Precision);
        Assert.All(vit.parameters(), p => Assert.True(p.dtype == ScalarType.BFloat16 && !p.requires_grad));
        Assert.All(model.TrainableParameters(), p => Assert.Equal(ScalarType.Float32, p.Param.dtype));
        Assert.Equal(Precision.Fp32, model.ApplyPrecision(Precision.Auto, DeviceType.CPU, CpuFeatures.Parse(Avx2Only)).Precision);
        Assert.All(vit.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype));

        using var bias = PromptedModel.Create(TinyVit(3), new BiasConfig(), 3);
        Assert.Equal(Precision.Fp32, bias.ApplyPrecision(Precision.Auto, DeviceType.CPU, CpuFeatures.Parse(Zen4)).Precision);
    }

    /// <summary>An identity whose backward records the dtype of the gradient passing through it.</summary>
    sealed class GradProbe : autograd.SingleTensorFunction<GradProbe>
    {
        public static readonly ConcurrentQueue<(long Tag, ScalarType Dtype)> Seen = new();
        public override string Name => nameof(GradProbe);
        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            ctx.save_for_backward([tensor((long)vars[1])]);
            var x = (Tensor)vars[0];
            return x.view_as(x);
        }
        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad)
        {
            Seen.Enqueue((ctx.get_saved_variables()[0].item<long>(), grad.dtype));
            return [grad, null!];
        }
    }

    /// <summary>
    /// `--precision bf16` training of VPT-deep (prefix form): every frozen GEMM of the backbone sees bf16 inputs and bf16
    /// weights in the forward, and its input-gradient GEMM (grad_out · W) gets a bf16 gradient and yields a bf16 one —
    /// recorded by hooks on every Linear and LayerNorm and by identity autograd probes on their inputs and outputs, not
    /// by timing. No backbone weight gets a gradient (no weight-gradient GEMMs), and the prompts and head stay float32.
    /// </summary>
    [Fact]
    public void Bf16TrainingRunsEveryFrozenGemmInBf16ForwardAndBackward()
    {
        using var vit = TinyVit(3);
        manual_seed(1);
        using var model = PromptedModel.Create(vit, new PromptConfig { Tokens = 2 }, 3);
        Assert.Contains("\"prefix_form\":true", MethodRegistry.ToJson(model.method.Config)); // VPT-deep: prefix form by default
        model.ApplyPrecision(Precision.Bf16);
        model.train();

        var forwardDtypes = new List<(string Op, ScalarType Input, ScalarType Weight, ScalarType Output)>();
        var names = new Dictionary<long, string>();
        var hooks = new List<Action>(); // removers
        void Watch(string name, nn.Module<Tensor, Tensor> m, Func<Tensor> weight)
        {
            long inTag = names.Count; names[inTag] = name + " input";
            long outTag = names.Count; names[outTag] = name + " output";
            var pre = m.register_forward_pre_hook((_, x) => x.requires_grad ? GradProbe.apply(x, inTag) : x);
            hooks.Add(pre.remove);
            var post = m.register_forward_hook((_, x, y) =>
            {
                forwardDtypes.Add((name, x.dtype, weight().dtype, y.dtype));
                return y.requires_grad ? GradProbe.apply(y, outTag) : y;
            });
            hooks.Add(post.remove);
        }
        for (int b = 0; b < vit.blocks.Count; b++)
        {
            var blk = vit.blocks[b];
            Watch($"blocks.{b}.norm1", blk.norm1, () => blk.norm1.weight!);
            Watch($"blocks.{b}.attn.qkv", blk.attn.qkv, () => blk.attn.qkv.weight!);
            Watch($"blocks.{b}.attn.proj", blk.attn.proj, () => blk.attn.proj.weight!);
            Watch($"blocks.{b}.norm2", blk.norm2, () => blk.norm2.weight!);
            Watch($"blocks.{b}.mlp.fc1", blk.mlp.fc1, () => blk.mlp.fc1.weight!);
            Watch($"blocks.{b}.mlp.fc2", blk.mlp.fc2, () => blk.mlp.fc2.weight!);
        }
        Watch("norm", vit.norm!, () => vit.norm!.weight!);
        GradProbe.Seen.Clear();
        manual_seed(2);
        var x = randn(4, 3, 32, 32);
        var y = tensor(new long[] { 0, 1, 2, 0 });
        var loss = nn.functional.cross_entropy(model.forward(x), y);
        loss.backward();
        foreach (var remove in hooks) remove();

        // Every watched op ran (norm1 twice per block: once for the prompts' keys/values, once for the tokens).
        Assert.Equal(names.Values.Where(n => n.EndsWith(" input")).Select(n => n[..^" input".Length]).Order(), forwardDtypes.Select(f => f.Op).Distinct().Order());
        Assert.All(forwardDtypes, f => Assert.True(f.Input == ScalarType.BFloat16 && f.Weight == ScalarType.BFloat16 && f.Output == ScalarType.BFloat16,
            $"{f.Op}: input {f.Input}, weight {f.Weight}, output {f.Output}"));
        var grads = GradProbe.Seen.ToList();
        Assert.All(grads, g => Assert.True(g.Dtype == ScalarType.BFloat16, $"{names[g.Tag]}: gradient {g.Dtype}"));
        var reached = grads.Select(g => names[g.Tag]).ToHashSet();
        // Block 1's tokens come from the frozen patch embedding, so its qkv of them needs no gradient (its prompts' k/v
        // do, outside the module); everything from its attention output on carries one.
        foreach (var op in new[] { "attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2" })
            for (int b = op == "attn.qkv" ? 1 : 0; b < vit.blocks.Count; b++)
            {
                Assert.Contains($"blocks.{b}.{op} output", reached);
                Assert.Contains($"blocks.{b}.{op} input", reached);
            }
        Assert.DoesNotContain("blocks.0.attn.qkv input", reached);
        Assert.All(vit.parameters(), p => Assert.True(p.grad is null, "a frozen backbone weight got a gradient"));
        Assert.All(model.TrainableParameters(), p => Assert.True(p.Param.dtype == ScalarType.Float32 && p.Param.grad is { } g && g.dtype == ScalarType.Float32, p.Name));
    }
}
