using System.Diagnostics;
using SkiaSharp;
using TorchSharp;
using VptSharp.Backbones;
using VptSharp.Checkpoints;
using static TorchSharp.torch;

namespace VptSharp.Tests;

internal static class TestUtil
{
    public static string Golden(string name) => Path.Combine(AppContext.BaseDirectory, "Golden", name);

    public static readonly VitConfig Tiny = new() { ImageSize = 32, PatchSize = 8, Width = 32, Depth = 2, Heads = 2, MlpDim = 64 };

    /// <summary>One shared tiny ViT for tests that only need its geometry (never trained or changed).</summary>
    public static readonly Lazy<VisionTransformer> TinyBackbone = new(() => TinyVit(0));
    /// <summary>One shared ViT-B/16 (random weights) for exact parameter counts at the paper's size.</summary>
    public static readonly Lazy<VisionTransformer> VitB16 = new(() => new VisionTransformer(VitConfig.Preset("vit-b16")));

    public static VisionTransformer TinyVit(int seed = 0, VitConfig? cfg = null)
    {
        manual_seed(seed);
        var m = new VisionTransformer(cfg ?? Tiny);
        // Xavier init (torchvision's choice for attention): at width 32, timm's std-0.02 init leaves the CLS output
        // nearly independent of the image, which would make a random backbone useless for learning tests.
        using (no_grad())
            foreach (var (name, p) in m.named_parameters())
                if (p.dim() == 2 && name.StartsWith("blocks")) nn.init.xavier_uniform_(p);
        m.Freeze();
        return m;
    }

    /// <summary>Bit-identical: same shape and every element equal.</summary>
    public static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    public static double MaxAbsDiff(Tensor a, Tensor b)
    {
        Assert.Equal(a.shape, b.shape);
        using var d = (a.to(float32) - b.to(float32)).abs().max();
        return d.item<float>();
    }

    public static string TempDir()
    {
        string d = Path.Combine(Path.GetTempPath(), "vpt-tests-" + Guid.NewGuid().ToString("N")[..10]);
        Directory.CreateDirectory(d);
        return d;
    }

    /// <summary>Saves a tiny random backbone as a VptSharp backbone file (safetensors + vit_config metadata).</summary>
    public static string SaveTinyBackbone(string dir, int seed = 0, VitConfig? cfg = null)
    {
        cfg ??= Tiny;
        using var m = TinyVit(seed, cfg);
        string path = Path.Combine(dir, "tiny-backbone.safetensors");
        SafetensorsFile.Save(path, m.BackboneParameters().ToDictionary(p => p.Name, p => (Tensor)p.Param),
            new Dictionary<string, string> { ["vit_config"] = System.Text.Json.JsonSerializer.Serialize(cfg) });
        return path;
    }

    /// <summary>Writes an image-folder dataset of coloured shapes: class c is a square of a class-specific colour.</summary>
    public static string MakeImageFolder(string root, int classes, int perClass, int size = 32, int seed = 0)
    {
        var rng = new Random(seed);
        for (int c = 0; c < classes; c++)
        {
            string dir = Path.Combine(root, $"class{c}");
            Directory.CreateDirectory(dir);
            for (int i = 0; i < perClass; i++)
            {
                using var bmp = new SKBitmap(size, size);
                using (var canvas = new SKCanvas(bmp))
                {
                    canvas.Clear(new SKColor((byte)rng.Next(60), (byte)rng.Next(60), (byte)rng.Next(60)));
                    var color = c switch { 0 => SKColors.Red, 1 => SKColors.Lime, 2 => SKColors.Blue, _ => SKColors.White };
                    using var paint = new SKPaint { Color = color };
                    int x = rng.Next(size / 2), y = rng.Next(size / 2);
                    canvas.DrawRect(x, y, size / 3 + rng.Next(4), size / 3 + rng.Next(4), paint);
                }
                using var img = SKImage.FromBitmap(bmp);
                using var data = img.Encode(SKEncodedImageFormat.Png, 100);
                File.WriteAllBytes(Path.Combine(dir, $"{i:D3}.png"), data.ToArray());
            }
        }
        return root;
    }

    public static readonly string CliDll = Path.Combine(AppContext.BaseDirectory, "vpt.dll");

    public sealed record CliResult(int ExitCode, string Stdout, string Stderr);

    /// <summary>Runs the real `vpt` program in a child process (exit codes and stderr as a user sees them).</summary>
    public static CliResult RunCli(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(CliDll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["VPTSHARP_CACHE"] = Path.Combine(Path.GetTempPath(), "vpt-tests-cache");
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(5))) { p.Kill(true); throw new TimeoutException("vpt " + string.Join(' ', args)); }
        return new CliResult(p.ExitCode, stdout.Result, stderr.Result);
    }
}
