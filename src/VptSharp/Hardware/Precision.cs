using TorchSharp;
using static TorchSharp.torch;

namespace VptSharp.Hardware;

/// <summary>What the frozen backbone computes in: chosen by the hardware (<see cref="Auto"/>) or forced.</summary>
public enum Precision { Auto, Fp32, Bf16 }

/// <summary>The precision a run uses and why (printed and recorded with the results).</summary>
public sealed record PrecisionChoice(Precision Precision, string Reason)
{
    public ScalarType Dtype => Precision == Hardware.Precision.Bf16 ? ScalarType.BFloat16 : ScalarType.Float32;
    /// <summary>"fp32" or "bf16", as recorded in metrics and task files.</summary>
    public string Name => PrecisionPolicy.NameOf(Precision);
    public override string ToString() => $"{Name} ({Reason})";
}

/// <summary>
/// Picks the backbone's precision. Auto = bfloat16 only where it is fast (a CPU with avx512_bf16 or AMX, a GPU of
/// compute capability 8.0 or newer) and the backbone stays frozen (a trained backbone weight needs a float32 master copy);
/// float32 everywhere else, so a CPU without bf16 hardware never gets the slow path unless asked for by name.
/// </summary>
public static class PrecisionPolicy
{
    public static Precision Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "auto" => Precision.Auto,
        "fp32" or "float32" or "float" => Precision.Fp32,
        "bf16" or "bfloat16" => Precision.Bf16,
        _ => throw new ArgumentException($"precision '{text}': use auto, fp32 or bf16"),
    };

    public static string NameOf(Precision p) => p switch { Precision.Bf16 => "bf16", Precision.Fp32 => "fp32", _ => "auto" };

    /// <param name="requested">auto, or a precision asked for by name (kept as asked).</param>
    /// <param name="backboneFrozen">False when the method trains backbone weights.</param>
    /// <param name="device">Where the backbone runs.</param>
    /// <param name="cpu">The CPU's features (used for CPU devices).</param>
    /// <param name="gpuComputeCapability">The GPU's compute capability (e.g. 8.6) for CUDA devices; null when unknown.</param>
    public static PrecisionChoice Resolve(Precision requested, bool backboneFrozen, DeviceType device, CpuFeatures cpu, double? gpuComputeCapability = null)
    {
        if (requested == Precision.Fp32) return new(Precision.Fp32, "asked for");
        if (requested == Precision.Bf16)
        {
            if (!backboneFrozen)
                throw new ArgumentException("bf16 keeps the frozen backbone in bfloat16 with no float32 copy, but this method trains backbone weights, which need one: use precision fp32 or auto");
            string speed = device == DeviceType.CPU && !cpu.FastBf16 ? $"; slow here: this CPU has no avx512_bf16/amx_bf16 ({cpu.VectorExtensions})" : "";
            return new(Precision.Bf16, "asked for" + speed);
        }
        if (!backboneFrozen) return new(Precision.Fp32, "auto: the method trains backbone weights");
        if (device == DeviceType.CUDA)
            return gpuComputeCapability >= 8.0
                ? new(Precision.Bf16, $"auto: GPU compute capability {gpuComputeCapability:0.0} has bf16 tensor cores")
                : new(Precision.Fp32, gpuComputeCapability is double c ? $"auto: GPU compute capability {c:0.0} < 8.0 has no fast bf16" : "auto: GPU compute capability unknown");
        if (device != DeviceType.CPU) return new(Precision.Fp32, $"auto: no bf16 rule for {device}");
        return cpu.FastBf16
            ? new(Precision.Bf16, $"auto: CPU has {(cpu.Avx512Bf16 ? "avx512_bf16" : "amx_bf16")}")
            : new(Precision.Fp32, $"auto: CPU has no avx512_bf16/amx_bf16 ({cpu.VectorExtensions})");
    }
}
