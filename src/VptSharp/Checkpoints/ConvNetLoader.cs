using System.Security.Cryptography;
using VptSharp.Backbones;
using static TorchSharp.torch;

namespace VptSharp.Checkpoints;

/// <summary>
/// The ConvNet sources of <see cref="BackboneLoader.Load"/>: "resnet18-imagenet" (the NuGet ONNX ResNet-18),
/// torchvision / timm ResNet and ConvNeXt state dicts (recognised by their keys), and "random:resnet18[:SEED]" /
/// "random:convnext_tiny[:SEED]" (untrained, for tests and timing).
/// </summary>
public static class ConvNetLoader
{
    /// <summary>The NuGet package's ResNet-18, bound to the sha256 of its two ONNX files (network, then preprocessing:
    /// both decide the features).</summary>
    public static LoadedBackbone LoadImageNetResNet18()
    {
        var (modelPath, prepPath) = ImageNetResNet18.Locate();
        string sha = ImageNetResNet18Sha256(modelPath, prepPath);
        var (model, _) = ImageNetResNet18.Load(modelPath, prepPath);
        return new LoadedBackbone(model, ImageNetResNet18.Source, sha, modelPath);
    }

    /// <summary>sha256 over ResNet18.onnx followed by ResNetPreprocess.onnx (what a task on resnet18-imagenet is bound to).</summary>
    public static string ImageNetResNet18Sha256(string modelPath, string prepPath)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 20];
        foreach (var path in new[] { modelPath, prepPath })
        {
            using var f = File.OpenRead(path);
            int n;
            while ((n = f.Read(buffer, 0, buffer.Length)) > 0) sha.AppendData(buffer, 0, n);
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    /// <summary>The hash of "resnet18-imagenet" without building the model (a task's binding is checked first).</summary>
    public static string ImageNetResNet18Sha256()
    {
        var (m, p) = ImageNetResNet18.Locate();
        return ImageNetResNet18Sha256(m, p);
    }

    /// <summary>"random:resnet18[:SEED]", "random:convnext_tiny[:SEED]": an untrained ConvNet; null for any other preset.</summary>
    public static LoadedBackbone? TryRandom(string source)
    {
        var parts = source.Split(':');
        if (parts.Length < 2) return null;
        string preset = parts[1].ToLowerInvariant();
        long seed = parts.Length > 2 && long.TryParse(parts[2], out long s) ? s : 0;
        Backbone? model = preset.StartsWith("resnet") ? new Func<Backbone>(() => { manual_seed(seed); return new ResNet(ResNetConfig.Preset(preset)); })()
            : preset.StartsWith("convnext") ? new Func<Backbone>(() => { manual_seed(seed); return new ConvNeXt(ConvNeXtConfig.Preset(preset)); })()
            : null;
        if (model is null) return null;
        model.Freeze();
        return new LoadedBackbone(model, source, CheckpointReader.Sha256(System.Text.Encoding.UTF8.GetBytes(source)), null);
    }

    /// <summary>A ResNet or ConvNeXt state dict (torchvision or timm names), else null (the caller reads it as a ViT).</summary>
    public static LoadedBackbone? TryFromTensors(IReadOnlyDictionary<string, Tensor> raw, string weightsPath, ArchOverrides arch, string source)
    {
        int size = arch.ImageSize ?? 224;
        Backbone model;
        var resnet = ResNetCheckpointKeys.ToTorchvision(raw, weightsPath);
        if (ResNetCheckpointKeys.Looks(resnet))
        {
            var r = new ResNet(ResNetCheckpointKeys.InferConfig(resnet, size, weightsPath));
            r.LoadTorchvision(F32(resnet), weightsPath);
            model = r;
        }
        else
        {
            // Only a state dict with ConvNeXt's stem (torchvision features.0.0 or timm stem.0) goes through its key mapping:
            // that mapping refuses foreign keys, and a ViT (timm's head.weight, blocks.*) must fall through to the ViT reader.
            static string Bare(string k) => k.StartsWith("module.") ? k["module.".Length..] : k;
            if (!raw.Keys.Select(Bare).Any(k => k == "features.0.0.weight" || k == "stem.0.weight")) return null;
            var convnext = ConvNeXtCheckpointKeys.ToTorchvision(raw, weightsPath);
            if (!ConvNeXtCheckpointKeys.Looks(convnext)) return null;
            var c = new ConvNeXt(ConvNeXtCheckpointKeys.InferConfig(convnext, size, weightsPath));
            c.LoadTorchvision(F32(convnext), weightsPath);
            model = c;
        }
        model.Freeze();
        return new LoadedBackbone(model, source, CheckpointReader.Sha256OfFile(weightsPath), weightsPath);
    }

    static Dictionary<string, Tensor> F32(Dictionary<string, Tensor> t) =>
        t.ToDictionary(kv => kv.Key, kv => kv.Value.dtype == float32 || !kv.Value.is_floating_point() ? kv.Value : kv.Value.to(float32));
}
