using System.Diagnostics;
using System.Globalization;
using TorchSharp;

namespace VptSharp.Hardware;

/// <summary>Device names: "auto" = the first CUDA device when this build's libtorch has CUDA and one is present, else the CPU.</summary>
public static class ComputeDevice
{
    /// <summary>"auto" → "cuda" or "cpu"; any other name is returned unchanged.</summary>
    public static string Resolve(string name) =>
        name.Trim().Equals("auto", StringComparison.OrdinalIgnoreCase) ? (torch.cuda.is_available() ? "cuda" : "cpu") : name;

    /// <summary>The compute capability nvidia-smi reports for the first GPU (e.g. 8.6), or null (no GPU, no tool).</summary>
    public static double? GpuComputeCapability()
    {
        try
        {
            var psi = new ProcessStartInfo("nvidia-smi", "--query-gpu=compute_cap --format=csv,noheader")
            { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            using var p = Process.Start(psi);
            if (p is null) return null;
            string text = p.StandardOutput.ReadToEnd();
            p.WaitForExit(5000);
            return ParseComputeCapability(text);
        }
        catch (System.ComponentModel.Win32Exception) { return null; } // no nvidia-smi
    }

    /// <summary>The first line of `nvidia-smi --query-gpu=compute_cap --format=csv,noheader`, e.g. "8.6".</summary>
    public static double? ParseComputeCapability(string text) =>
        double.TryParse(text.Split('\n')[0].Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double c) ? c : null;
}
