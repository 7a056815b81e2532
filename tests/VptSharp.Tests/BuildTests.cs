using System.Diagnostics;
using System.Text.Json;

namespace VptSharp.Tests;

/// <summary>The GPU build switch (issue 17): one MSBuild property swaps the libtorch runtime package. Evaluated only:
/// restoring the CUDA runtime would download several GB.</summary>
public class BuildTests
{
    static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "VptSharp.slnx"))) return dir.FullName;
        throw new DirectoryNotFoundException("VptSharp.slnx above " + AppContext.BaseDirectory);
    }

    static (int ExitCode, string Output) Msbuild(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add("msbuild");
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, stdout + stderr.Result);
    }

    static List<string> LibTorchReferences(string project, string runtime)
    {
        var (code, output) = Msbuild(project, "-getItem:PackageReference", $"-p:TorchRuntime={runtime}");
        Assert.True(code == 0, output);
        using var doc = JsonDocument.Parse(output);
        return doc.RootElement.GetProperty("Items").GetProperty("PackageReference").EnumerateArray()
            .Select(e => e.GetProperty("Identity").GetString()!).Where(id => id.StartsWith("libtorch")).ToList();
    }

    [Fact]
    public void TorchRuntimePropertySwapsTheNativePackage()
    {
        string cli = Path.Combine(RepoRoot(), "src", "VptSharp.Cli", "VptSharp.Cli.csproj");
        string tests = Path.Combine(RepoRoot(), "tests", "VptSharp.Tests", "VptSharp.Tests.csproj");
        foreach (var project in new[] { cli, tests })
        {
            Assert.Equal(["libtorch-cpu-linux-x64"], LibTorchReferences(project, "cpu"));
            Assert.Equal(["libtorch-cuda-12.8-linux-x64"], LibTorchReferences(project, "cuda"));
        }
        var (code, output) = Msbuild(cli, "-t:VptCheckTorchRuntime", "-p:TorchRuntime=rocm", "-nologo");
        Assert.NotEqual(0, code);
        Assert.Contains("TorchRuntime=rocm is not a libtorch runtime VptSharp knows: use -p:TorchRuntime=cpu (default) or -p:TorchRuntime=cuda", output);
    }
}
