using System.Text.Json.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace VptSharp.Backbones;

/// <summary>A Swin Transformer v1 (Liu et al., ICCV 2021) as torchvision builds it: stage s has width EmbedDim·2^s.</summary>
public sealed record SwinConfig
{
    public int PatchSize { get; init; } = 4;
    public int EmbedDim { get; init; } = 96;
    public int[] Depths { get; init; } = [2, 2, 6, 2];
    public int[] Heads { get; init; } = [3, 6, 12, 24];
    public int Window { get; init; } = 7;
    public double MlpRatio { get; init; } = 4.0;
    public int InChannels { get; init; } = 3;
    public int ImageSize { get; init; } = 224;

    [JsonIgnore] public int[] Widths => Enumerable.Range(0, Depths.Length).Select(s => EmbedDim << s).ToArray();

    /// <summary>torchvision's swin_t/s/b (and Swin-L of the paper's Table 2 appendix, the official 192-wide config).</summary>
    public static SwinConfig Preset(string name) => name.ToLowerInvariant().Replace("-", "_") switch
    {
        "swin_t" or "swin_tiny" => new() { EmbedDim = 96, Depths = [2, 2, 6, 2], Heads = [3, 6, 12, 24] },
        "swin_s" or "swin_small" => new() { EmbedDim = 96, Depths = [2, 2, 18, 2], Heads = [3, 6, 12, 24] },
        "swin_b" or "swin_base" => new() { EmbedDim = 128, Depths = [2, 2, 18, 2], Heads = [4, 8, 16, 32] },
        "swin_l" or "swin_large" => new() { EmbedDim = 192, Depths = [2, 2, 18, 2], Heads = [6, 12, 24, 48] },
        _ => throw new ArgumentException($"unknown Swin '{name}'; known: swin_t, swin_s, swin_b, swin_l"),
    };

    /// <summary>timm's names (swin_base_patch4_window12_384, swin_tiny_patch4_window7_224, …; suffixes such as .ms_in22k
    /// ignored): the preset with that patch size, window and image size. Null for other names.</summary>
    public static SwinConfig? FromTimmName(string name)
    {
        var m = System.Text.RegularExpressions.Regex.Match(name.ToLowerInvariant(), @"^swin_(tiny|small|base|large)_patch(\d+)_window(\d+)_(\d+)(?:$|[._])");
        if (!m.Success) return null;
        return Preset("swin_" + m.Groups[1].Value) with
        {
            PatchSize = int.Parse(m.Groups[2].Value), Window = int.Parse(m.Groups[3].Value), ImageSize = int.Parse(m.Groups[4].Value),
        };
    }

    public void Validate()
    {
        if (Depths is null || Heads is null || Depths.Length == 0 || Depths.Length != Heads.Length || Depths.Any(d => d < 1) || Heads.Any(h => h < 1))
            throw new ArgumentException("Swin config: Depths and Heads need one positive entry per stage");
        var widths = Widths;
        for (int s = 0; s < Depths.Length; s++)
            if (widths[s] % Heads[s] != 0) throw new ArgumentException($"Swin config: stage {s + 1} width {widths[s]} is not divisible by its {Heads[s]} heads");
        if (PatchSize < 1 || Window < 1 || EmbedDim < 1 || ImageSize < PatchSize || MlpRatio <= 0)
            throw new ArgumentException("Swin config: patch size, window, width, image size and MLP ratio must be positive");
    }
}

/// <summary>
/// Swin Transformer v1 with torchvision 0.14's module names (features.0 = patch embedding: 4×4/4 conv + LayerNorm over
/// [B, H, W, C]; features.{2s+1} = stage s's blocks; features.{2s} = the patch merging before stage s; norm; head).
/// Blocks alternate plain and shifted (by window/2) windows; attention adds a learned relative-position bias and, in
/// shifted blocks, a mask of −100 between tokens that the cyclic shift brought together from different image regions
/// (torchvision's constant). Feature maps are padded to a multiple of the window; a window at least as large as the map
/// is not shifted (both as torchvision). Stochastic depth is an identity in eval and is not built.
/// Offers <see cref="BackboneCapability.MlpHook"/> (adapters, each block at its stage's width) and
/// <see cref="BackboneCapability.WindowPrompts"/> (VPT on Swin). Other layouts are mapped in <see cref="SwinCheckpointKeys"/>.
/// </summary>
public sealed class SwinTransformer : Backbone, IWindowPromptBackbone
{
    /// <summary>Children are registered explicitly under torchvision's names; TorchSharp's field-name registration
    /// (which it also runs lazily) would add them a second time under the C# field names.</summary>
    protected override void RegisterComponents() { }

    public SwinConfig Config { get; }
    readonly Conv2d patchConv;
    readonly LayerNorm patchNorm;
    readonly PatchMerging?[] merging;
    readonly SwinBlock[][] stages;
    readonly SwinBlock[] blocks;
    readonly int[] stageOf;
    readonly LayerNorm norm;
    Linear? head;

    public SwinTransformer(SwinConfig config, int numClasses = 0) : base("SwinTransformer")
    {
        config.Validate();
        Config = config;
        var widths = config.Widths;
        var features = new List<(string, Module)>();
        patchConv = Conv2d(config.InChannels, config.EmbedDim, config.PatchSize, stride: config.PatchSize);
        patchNorm = SwinBlock.Norm(config.EmbedDim);
        features.Add(("0", new Named(("0", patchConv), ("2", patchNorm))));
        merging = new PatchMerging?[config.Depths.Length];
        stages = new SwinBlock[config.Depths.Length][];
        for (int s = 0; s < stages.Length; s++)
        {
            if (s > 0)
            {
                merging[s] = new PatchMerging(widths[s - 1]);
                features.Add(($"{2 * s}", merging[s]!));
            }
            stages[s] = Enumerable.Range(0, config.Depths[s])
                .Select(j => new SwinBlock(widths[s], config.Heads[s], config.Window, j % 2 == 0 ? 0 : config.Window / 2, config.MlpRatio)).ToArray();
            features.Add(($"{2 * s + 1}", new Named(stages[s].Select((b, i) => (i.ToString(), (Module)b)).ToArray())));
        }
        register_module("features", new Named([.. features]));
        blocks = stages.SelectMany(s => s).ToArray();
        stageOf = stages.SelectMany((st, s) => st.Select(_ => s)).ToArray();
        norm = SwinBlock.Norm(widths[^1]);
        register_module("norm", norm);
        ResetClassifier(numClasses);
    }

    public override string Family => "swin";
    public override string Architecture => $"{Family} {System.Text.Json.JsonSerializer.Serialize(Config)}";
    public override BackboneCapability Capabilities => BackboneCapability.MlpHook | BackboneCapability.WindowPrompts;
    public override int NumFeatures => Config.Widths[^1];
    public override int Depth => blocks.Length;
    public override int ImageSize => Config.ImageSize;
    public override int InChannels => Config.InChannels;
    public override Linear? Classifier => head;
    public override int BlockWidth(int block) => Config.Widths[stageOf[block]];

    public int PatchSize => Config.PatchSize;
    public IReadOnlyList<int> StageDepths => Config.Depths;
    public IReadOnlyList<int> StageWidths => Config.Widths;
    public int StageOf(int block) => stageOf[block];

    /// <summary>Patch embedding: [B, C, H, W] → [B, H/P, W/P, d] (channels last, as torchvision's Swin).</summary>
    public override Tensor Embed(Tensor images)
    {
        using var c = patchConv.call(images);
        using var nhwc = c.permute(0, 2, 3, 1);
        return patchNorm.call(nhwc);
    }

    /// <summary>
    /// Stages of blocks with patch merging between them, then the final norm: [B, H, W, C] → [B, H/2^(S−1), W/2^(S−1), C_last].
    /// Before block i the hooks see the image-token map (<see cref="IBlockHooks.BeforeBlock"/>) and give the block its window
    /// prompts (<see cref="IBlockHooks.WindowPrompts"/>), offered the prompt outputs of the previous block of the same stage:
    /// patch merging takes image tokens only, so no prompt crosses it.
    /// </summary>
    public override Tensor ForwardBlocks(Tensor x, IBlockHooks hooks)
    {
        using var scope = NewDisposeScope();
        int i = 0;
        for (int s = 0; s < stages.Length; s++)
        {
            if (merging[s] is PatchMerging m) x = m.call(x);
            Tensor? carried = null;
            foreach (var blk in stages[s])
            {
                x = hooks.BeforeBlock(i, x);
                var prompts = hooks.WindowPrompts(i, carried, x.shape[0]);
                (x, carried) = blk.Forward(x, prompts, i, hooks);
                i++;
            }
        }
        return norm.call(x).MoveToOuterDisposeScope();
    }

    /// <summary>Global average of the final-norm image tokens → [B, C] (torchvision: permute, AdaptiveAvgPool2d(1), flatten).</summary>
    public override Tensor Pool(Tensor features) => features.mean([1, 2]);

    public override void ResetClassifier(int numClasses)
    {
        if (head is not null)
        {
            _internal_submodules.Remove("head"); // TorchSharp has no unregister; the registry is this module's own
            head.Dispose();
        }
        head = numClasses > 0 ? Linear(NumFeatures, numClasses) : null;
        if (head is not null)
        {
            using (no_grad()) { Init.TruncNormal(head.weight!, 0.02); head.bias!.zero_(); }
            register_module("head", head);
        }
    }

    public override IEnumerable<(string Name, Parameter Param)> Parameters(ParameterGroup group, int count = 1)
    {
        var all = named_parameters().Where(p => !p.name.StartsWith("head.")).Select(p => (p.name, p.parameter));
        return group switch
        {
            ParameterGroup.All => all,
            // Every bias: patch conv and norm, per block norm1/qkv/proj/norm2/mlp, merging norms, final norm (merging
            // reductions have none; relative-position tables are not biases of a layer).
            ParameterGroup.Biases => all.Where(p => p.name.EndsWith(".bias")),
            ParameterGroup.Norms => all.Where(p => IsNorm(p.name)),
            ParameterGroup.LastBlocks => LastBlocks(count, all),
            _ => throw new ArgumentOutOfRangeException(nameof(group), group, $"a Swin backbone has no {group} group"),
        };
    }

    /// <summary>The last k blocks in stage order, the final norm, and each patch merging that lies between two of those
    /// blocks (as the reference's partial-k on Swin: partial-4 of Swin-B takes stage 4's two blocks, stage 3's last two
    /// and the merging between them).</summary>
    IEnumerable<(string Name, Parameter Param)> LastBlocks(int count, IEnumerable<(string Name, Parameter Param)> all)
    {
        if (count < 1 || count > Depth) throw new ArgumentOutOfRangeException(nameof(count), count, $"partial-{count}: the Swin has {Depth} blocks");
        var prefixes = new List<string> { "norm." };
        int first = Depth - count, i = 0;
        for (int s = 0; s < stages.Length; s++)
        {
            if (s > 0 && i - 1 >= first) prefixes.Add($"features.{2 * s}.");
            for (int j = 0; j < stages[s].Length; j++, i++)
                if (i >= first) prefixes.Add($"features.{2 * s + 1}.{j}.");
        }
        return all.Where(p => prefixes.Any(p.Name.StartsWith));
    }

    static bool IsNorm(string name) =>
        name.StartsWith("norm.") || name.StartsWith("features.0.2.") || name.Contains(".norm1.") || name.Contains(".norm2.")
        || (name.Split('.') is var p && p.Length == 4 && p[2] == "norm");

    /// <summary>Loads a state dict in torchvision names (see <see cref="SwinCheckpointKeys"/> for timm's and the official
    /// layout). relative_position_index (a buffer derived from the window size) is recomputed, never read.</summary>
    public void LoadTorchvision(IReadOnlyDictionary<string, Tensor> tensors, string what)
    {
        var given = tensors.Where(kv => !SwinCheckpointKeys.IsDerivedBuffer(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value);
        ConvNetWeights.CopyInto(this, given, what,
            $"Swin ({string.Join("-", Config.Depths)} blocks, width {Config.EmbedDim}, window {Config.Window})", "head.");
    }
}

/// <summary>The merging of 2×2 neighbouring tokens before a stage: [B, H, W, C] → concat (x[0::2,0::2], x[1::2,0::2],
/// x[0::2,1::2], x[1::2,1::2]) → LayerNorm(4C) → Linear(4C → 2C, no bias); odd sizes padded first (torchvision).</summary>
sealed class PatchMerging : Module<Tensor, Tensor>
{
    public readonly Linear reduction;
    public readonly LayerNorm norm;

    public PatchMerging(int dim) : base("PatchMerging")
    {
        reduction = Linear(4 * dim, 2 * dim, hasBias: false);
        norm = SwinBlock.Norm(4 * dim);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], h = x.shape[1], w = x.shape[2], c = x.shape[3];
        if (h % 2 == 1 || w % 2 == 1) { x = functional.pad(x, [0, 0, 0, w % 2, 0, h % 2]); h += h % 2; w += w % 2; }
        // [B, H/2, rowParity, W/2, colParity, C] → order (colParity, rowParity): x0, x1, x2, x3 as torchvision concatenates them.
        var merged = x.reshape(b, h / 2, 2, w / 2, 2, c).permute(0, 1, 3, 4, 2, 5).reshape(b, h / 2, w / 2, 4 * c);
        return reduction.call(norm.call(merged)).MoveToOuterDisposeScope();
    }
}

/// <summary>torchvision's SwinTransformerBlock: x + W-MSA/SW-MSA(norm1(x)), then x + MLP(norm2(x)) (mlp.0 → GELU → mlp.3).
/// With window prompts [B, p, C] the prompts take the same norms, attention (inside every window) and MLP.</summary>
sealed class SwinBlock : Module<Tensor, Tensor>
{
    protected override void RegisterComponents() { }

    public readonly LayerNorm norm1, norm2;
    public readonly WindowAttention attn;
    public readonly Linear fc1, fc2;

    /// <summary>torchvision's Swin norm: LayerNorm eps 1e-5, weight 1 and bias 0 set explicitly.</summary>
    public static LayerNorm Norm(long dim)
    {
        var n = LayerNorm(dim, 1e-5);
        using (no_grad()) { n.weight!.fill_(1); n.bias!.zero_(); }
        return n;
    }

    public SwinBlock(int dim, int heads, int window, int shift, double mlpRatio) : base("SwinTransformerBlock")
    {
        norm1 = Norm(dim);
        attn = new WindowAttention(dim, heads, window, shift);
        norm2 = Norm(dim);
        int hidden = (int)(dim * mlpRatio);
        fc1 = Linear(dim, hidden);
        fc2 = Linear(hidden, dim);
        register_module("norm1", norm1);
        register_module("attn", attn);
        register_module("norm2", norm2);
        register_module("mlp", new Named(("0", fc1), ("3", fc2)));
    }

    Tensor Mlp(Tensor x)
    {
        using var h = fc1.call(x);
        using var g = functional.gelu(h);
        return fc2.call(g);
    }

    public override Tensor forward(Tensor x) => Forward(x, null, 0, NoHooks.Instance).X;

    /// <summary>Image tokens [B, H, W, C] (and prompts [B or 1, p, C], or null) through the block. The MLP hook sees the
    /// image tokens' MLP output.</summary>
    /// <summary>The alpha of every residual add, held for the process's lifetime: TorchSharp's tensor + tensor converts 1 to
    /// a Scalar implicitly, which the GC may finalize while libtorch still reads it (seen here as "Expected false to be
    /// true" from Scalar::toFloat inside at::add during a sweep).</summary>
    internal static Scalar One => Scalars.One;

    public (Tensor X, Tensor? Prompts) Forward(Tensor x, Tensor? prompts, int index, IBlockHooks hooks)
    {
        using var scope = NewDisposeScope();
        if (prompts is not null)
        {
            prompts = prompts.to(x.dtype);
            if (prompts.shape[0] != x.shape[0]) prompts = prompts.expand(x.shape[0], -1, -1);
        }
        var (a, pa) = attn.Forward(norm1.call(x), prompts is null ? null : norm1.call(prompts));
        var h = x.add(a, One);
        var y = h.add(hooks.AfterMlp(index, Mlp(norm2.call(h))), One);
        Tensor? py = null;
        if (prompts is not null)
        {
            var ph = prompts.add(pa!, One);
            py = ph.add(Mlp(norm2.call(ph)), One).MoveToOuterDisposeScope();
        }
        return (y.MoveToOuterDisposeScope(), py);
    }
}

/// <summary>
/// Window multi-head self-attention with a relative-position bias table [(2W−1)², heads] (torchvision's
/// ShiftedWindowAttention: qkv, proj, relative_position_bias_table). With prompts, each window's sequence is the p
/// prompts followed by its W² image tokens: prompt rows and columns get no relative-position bias and are never masked
/// (the shift mask separates image regions; prompts belong to none), and a prompt's output is the mean of its outputs
/// over the windows.
/// </summary>
public sealed class WindowAttention : Module<Tensor, Tensor>
{
    readonly int heads, window, shift;
    public readonly Linear qkv, proj;
    public readonly Parameter relative_position_bias_table;
    /// <summary>[W², W²] indices into the table (torchvision's relative_position_index buffer, derived from the window:
    /// kept out of the state dict and recomputed, so a device or dtype change never touches it).</summary>
    readonly long[] index;
    readonly Dictionary<(long, long, string), Tensor> maskCache = [];

    public WindowAttention(int dim, int heads, int window, int shift) : base("ShiftedWindowAttention")
    {
        this.heads = heads;
        this.window = window;
        this.shift = shift;
        qkv = Linear(dim, 3 * dim);
        proj = Linear(dim, dim);
        relative_position_bias_table = Parameter(zeros((2 * window - 1) * (2 * window - 1), heads));
        using (no_grad()) Init.TruncNormal(relative_position_bias_table, 0.02);
        index = RelativePositionIndex(window);
        RegisterComponents();
    }

    /// <summary>For tokens a = (ya, xa), b = (yb, xb) of a W×W window: (ya − yb + W − 1)·(2W − 1) + (xa − xb + W − 1).</summary>
    public static long[] RelativePositionIndex(int w)
    {
        int n = w * w;
        var idx = new long[n * n];
        for (int a = 0; a < n; a++)
            for (int b = 0; b < n; b++)
                idx[a * n + b] = (a / w - b / w + w - 1) * (2 * w - 1) + (a % w - b % w + w - 1);
        return idx;
    }

    public override Tensor forward(Tensor x) => Forward(x, null).X;

    /// <summary>The shifted-window mask of a padded pH×pW map: [nW, W², W²], 0 within one region, −100 across
    /// (regions: the map's rows and columns split at −W and −shift, as torchvision slices them).</summary>
    Tensor ShiftMask(long pH, long pW, long sH, long sW, Tensor like)
    {
        var key = (pH, pW, like.dtype + "/" + like.device);
        if (maskCache.TryGetValue(key, out var cached)) return cached;
        static int Region(long r, long size, long w, long s) => r < size - w ? 0 : r < size - s ? 1 : 2;
        long nH = pH / window, nWw = pW / window, n = window * window;
        var labels = new int[nH * nWw, n];
        for (long y = 0; y < pH; y++)
            for (long x = 0; x < pW; x++)
                labels[(y / window) * nWw + x / window, (y % window) * window + x % window] = 3 * Region(y, pH, window, sH) + Region(x, pW, window, sW);
        var mask = new float[nH * nWw * n * n];
        for (int wi = 0; wi < nH * nWw; wi++)
            for (int a = 0; a < n; a++)
                for (int b = 0; b < n; b++)
                    mask[(wi * n + a) * n + b] = labels[wi, a] == labels[wi, b] ? 0f : -100f;
        var t = tensor(mask, new long[] { nH * nWw, n, n }).to(like.dtype, like.device).DetachFromDisposeScope();
        maskCache[key] = t;
        return t;
    }

    /// <summary>Normalised image tokens [B, H, W, C] and prompts [B, p, C] (or null) → attention outputs of both.</summary>
    public (Tensor X, Tensor? Prompts) Forward(Tensor x, Tensor? prompts)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], h = x.shape[1], w = x.shape[2], c = x.shape[3];
        long padB = (window - h % window) % window, padR = (window - w % window) % window;
        var t = padB + padR > 0 ? functional.pad(x, [0, 0, 0, padR, 0, padB]) : x;
        long pH = h + padB, pW = w + padR;
        long sH = window >= pH ? 0 : shift, sW = window >= pW ? 0 : shift;
        if (sH + sW > 0) t = t.roll([-sH, -sW], [1, 2]);
        long nW = (pH / window) * (pW / window), n = window * window;
        t = t.reshape(b, pH / window, window, pW / window, window, c).permute(0, 1, 3, 2, 4, 5).reshape(b * nW, n, c);
        long p = prompts?.shape[1] ?? 0;
        // The same prompts (of the same sample) open each of that sample's windows: windows are sample-major.
        var seq = prompts is null ? t : cat([prompts.repeat_interleave(nW, dim: 0), t], 1);
        long len = p + n, hd = c / heads;
        var qkvOut = qkv.call(seq).reshape(b * nW, len, 3, heads, hd).permute(2, 0, 3, 1, 4);
        using var scale = Math.Pow(hd, -0.5).ToScalar(); // explicit and disposed after use (see SwinBlock.One)
        var q = qkvOut[0].mul(scale);
        var logits = q.matmul(qkvOut[1].transpose(-2, -1));
        var bias = relative_position_bias_table.index_select(0, tensor(index, device: x.device)).reshape(n, n, heads).permute(2, 0, 1);
        if (p > 0) bias = functional.pad(bias, [p, 0, p, 0]); // prompts: no relative position
        logits = logits.add(bias.to(logits.dtype), SwinBlock.One);
        if (sH + sW > 0)
        {
            var mask = ShiftMask(pH, pW, sH, sW, logits);
            if (p > 0) mask = functional.pad(mask, [p, 0, p, 0]); // prompts are in no image region: never masked
            logits = logits.view(b, nW, heads, len, len).add(mask.unsqueeze(1).unsqueeze(0), SwinBlock.One).view(b * nW, heads, len, len);
        }
        var o = proj.call(logits.softmax(-1).matmul(qkvOut[2]).transpose(1, 2).reshape(b * nW, len, c));
        Tensor? promptOut = p > 0 ? o.narrow(1, 0, p).reshape(b, nW, p, c).mean([1]) : null;
        var img = o.narrow(1, p, n).reshape(b, pH / window, pW / window, window, window, c).permute(0, 1, 3, 2, 4, 5).reshape(b, pH, pW, c);
        if (sH + sW > 0) img = img.roll([sH, sW], [1, 2]);
        if (padB + padR > 0) img = img.narrow(1, 0, h).narrow(2, 0, w).contiguous();
        return (img.MoveToOuterDisposeScope(), promptOut?.MoveToOuterDisposeScope());
    }
}
