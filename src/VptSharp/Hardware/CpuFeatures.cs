namespace VptSharp.Hardware;

/// <summary>
/// The vector extensions of the CPU this process runs on, as Linux reports them in /proc/cpuinfo. They decide which
/// precision is fast: with avx512_bf16 (or AMX) libtorch's oneDNN kernels run bfloat16 matrix products ~4× faster than
/// float32; without them bf16 products take a slow conversion path (~8× slower than float32 on an AVX2-only CPU).
/// Parsed from text so any CPU can be described in a test.
/// </summary>
public sealed class CpuFeatures
{
    /// <summary>The flags worth printing, in the order they are printed.</summary>
    public static readonly IReadOnlyList<string> Reported = ["avx2", "avx512f", "avx512_bf16", "amx_bf16"];

    readonly HashSet<string> flags;

    public string Model { get; }

    CpuFeatures(string model, IEnumerable<string> flags)
    {
        Model = model;
        this.flags = new HashSet<string>(flags, StringComparer.OrdinalIgnoreCase);
    }

    /// <summary>From the text of /proc/cpuinfo: the first processor's "model name" and "flags" lines.</summary>
    public static CpuFeatures Parse(string cpuinfo)
    {
        string? model = null, flagLine = null;
        foreach (var raw in cpuinfo.Split('\n'))
        {
            int colon = raw.IndexOf(':');
            if (colon < 0) continue;
            string key = raw[..colon].Trim(), value = raw[(colon + 1)..].Trim();
            if (model is null && key == "model name") model = value;
            else if (flagLine is null && key is "flags" or "Features") flagLine = value; // x86 / arm64
        }
        return new CpuFeatures(model ?? "unknown CPU", (flagLine ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries));
    }

    static CpuFeatures? current;

    /// <summary>This machine's CPU (/proc/cpuinfo; elsewhere what .NET's intrinsics report, without bf16).</summary>
    public static CpuFeatures Current => current ??= Detect();

    static CpuFeatures Detect()
    {
        const string path = "/proc/cpuinfo";
        if (OperatingSystem.IsLinux() && File.Exists(path)) return Parse(File.ReadAllText(path));
        var known = new List<string>();
        if (System.Runtime.Intrinsics.X86.Avx2.IsSupported) known.Add("avx2");
        if (System.Runtime.Intrinsics.X86.Avx512F.IsSupported) known.Add("avx512f");
        return new CpuFeatures(System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture.ToString(), known);
    }

    public bool Has(string flag) => flags.Contains(flag);
    public bool Avx2 => Has("avx2");
    public bool Avx512F => Has("avx512f");
    public bool Avx512Bf16 => Has("avx512_bf16");
    public bool AmxBf16 => Has("amx_bf16");

    /// <summary>bfloat16 matrix products in hardware: what makes bf16 faster than float32 on a CPU.</summary>
    public bool FastBf16 => Avx512Bf16 || AmxBf16;

    /// <summary>"avx2 avx512f avx512_bf16" — the <see cref="Reported"/> flags this CPU has ("no AVX2" when none).</summary>
    public string VectorExtensions => Reported.Where(Has).ToList() is { Count: > 0 } l ? string.Join(" ", l) : "no AVX2";

    public override string ToString() => $"{Model} ({VectorExtensions})";
}
