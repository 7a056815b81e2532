namespace VptSharp.Data;

/// <summary>An 8-bit RGB image, interleaved (R,G,B per pixel), row-major.</summary>
public sealed record RgbImage(int Width, int Height, byte[] Pixels)
{
    public static RgbImage FromGray(int w, int h, ReadOnlySpan<byte> gray)
    {
        var px = new byte[w * h * 3];
        for (int i = 0; i < w * h; i++) px[3 * i] = px[3 * i + 1] = px[3 * i + 2] = gray[i];
        return new RgbImage(w, h, px);
    }
}

/// <summary>A labelled image collection. Samples load lazily; labels are known up front.</summary>
public abstract class ImageDataset
{
    public abstract int Count { get; }
    public abstract IReadOnlyList<string> Classes { get; }
    public abstract int LabelOf(int index);
    /// <summary>Decodes sample <paramref name="index"/>; throws <see cref="BadImageException"/> naming the file.</summary>
    public abstract RgbImage Load(int index);
    /// <summary>A human-readable name of the sample (file path or "fashion-mnist:train#12").</summary>
    public abstract string NameOf(int index);

    public ImageDataset Subset(IReadOnlyList<int> indices) => new SubsetDataset(this, indices.ToArray());

    public int[] Labels() => Enumerable.Range(0, Count).Select(LabelOf).ToArray();

    /// <summary>Class-stratified split into (train, val) by a fraction, shuffled with a seed.</summary>
    public (ImageDataset Train, ImageDataset Val) SplitTrainVal(double valFraction, int seed)
    {
        if (valFraction <= 0 || valFraction >= 1) throw new InvalidSettingException("val-fraction", valFraction, "must be in (0, 1)");
        var rng = new Random(seed);
        var train = new List<int>();
        var val = new List<int>();
        foreach (var group in Enumerable.Range(0, Count).GroupBy(LabelOf).OrderBy(g => g.Key))
        {
            var idx = group.ToArray();
            rng.Shuffle(idx);
            int nVal = (int)Math.Round(idx.Length * valFraction);
            val.AddRange(idx[..nVal]);
            train.AddRange(idx[nVal..]);
        }
        train.Sort(); val.Sort();
        return (Subset(train), Subset(val));
    }

    /// <summary>
    /// A class-balanced, seeded subset for data-size studies (VPT paper, Fig. 3: 10%–80% of train): each class keeps
    /// round(fraction × its count) samples (halves round up), at least one, chosen by a seeded shuffle; indices stay in
    /// dataset order.
    /// </summary>
    public ImageDataset SubsampleBalanced(double fraction, int seed)
    {
        if (!(fraction > 0 && fraction <= 1)) throw new ArgumentException($"subsample fraction {fraction}: must be in (0, 1]");
        var rng = new Random(seed);
        var keep = new List<int>();
        foreach (var group in Enumerable.Range(0, Count).GroupBy(LabelOf).OrderBy(g => g.Key))
        {
            var idx = group.ToArray();
            rng.Shuffle(idx);
            int n = Math.Max(1, (int)Math.Round(idx.Length * fraction, MidpointRounding.AwayFromZero));
            keep.AddRange(idx[..n]);
        }
        keep.Sort();
        return Subset(keep);
    }
}

public sealed class SubsetDataset(ImageDataset parent, int[] indices) : ImageDataset
{
    public override int Count => indices.Length;
    public override IReadOnlyList<string> Classes => parent.Classes;
    public override int LabelOf(int index) => parent.LabelOf(indices[index]);
    public override RgbImage Load(int index) => parent.Load(indices[index]);
    public override string NameOf(int index) => parent.NameOf(indices[index]);
}
