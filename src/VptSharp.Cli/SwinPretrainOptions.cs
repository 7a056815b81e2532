using System.CommandLine;
using System.Text.Json;
using VptSharp.Backbones;

namespace VptSharp.Cli;

/// <summary>`vpt pretrain --family swin`: a Swin v1 from scratch (--width is the stage-1 width, --heads the stage-1 heads,
/// both doubling per stage as in Swin-T/S/B/L; --stages the blocks per stage; --window; --patch; --image-size), or a
/// Swin preset / timm name through --arch. Written to backbone.safetensors in torchvision's names with a swin_config.</summary>
internal sealed class SwinPretrainOptions
{
    readonly Option<string> family = new("--family") { Description = "vit or swin", DefaultValueFactory = _ => "vit" };
    readonly Option<string> stages = new("--stages") { Description = "Swin: blocks per stage, e.g. 2,2,2", DefaultValueFactory = _ => "2,2,6,2" };
    readonly Option<int> window = new("--window") { Description = "Swin: attention window (tokens per side)", DefaultValueFactory = _ => 7 };

    public static SwinPretrainOptions AddTo(Command c)
    {
        var o = new SwinPretrainOptions();
        c.Options.Add(o.family);
        c.Options.Add(o.stages);
        c.Options.Add(o.window);
        return o;
    }

    public (Backbone Model, string ConfigKey, string ConfigJson) Build(ParseResult r, Func<VitConfig> vit, string arch, int width, int heads, int patch, int image)
    {
        switch (r.GetValue(family))
        {
            case "vit":
                var v = vit();
                return (new VisionTransformer(v), "vit_config", JsonSerializer.Serialize(v));
            case "swin":
                SwinConfig cfg;
                if (arch != "custom")
                    cfg = (SwinConfig.FromTimmName(arch) ?? SwinConfig.Preset(arch)) with { ImageSize = image };
                else
                {
                    int[] depths;
                    try { depths = r.GetValue(stages)!.Split(',').Select(s => int.Parse(s.Trim())).ToArray(); }
                    catch (FormatException) { throw new ArgumentException($"--stages '{r.GetValue(stages)}': give blocks per stage as integers, e.g. 2,2,2"); }
                    cfg = new SwinConfig
                    {
                        PatchSize = patch, EmbedDim = width, Depths = depths, Heads = depths.Select((_, s) => heads << s).ToArray(),
                        Window = r.GetValue(window), ImageSize = image,
                    };
                }
                try { cfg.Validate(); }
                catch (ArgumentException e) { throw new ArgumentException($"{e.Message}; fix --width, --heads, --stages, --window, --patch or --image-size"); }
                return (new SwinTransformer(cfg), "swin_config", JsonSerializer.Serialize(cfg));
            default:
                throw new ArgumentException($"--family '{r.GetValue(family)}': use vit or swin");
        }
    }
}
