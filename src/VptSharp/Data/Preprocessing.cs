namespace VptSharp.Data;

public enum ResizeMode
{
    /// <summary>VTAB: plain resize to the model's size.</summary>
    Plain,
    /// <summary>FGVC: resize to size·256/224, random crop + horizontal flip for training, centre crop for eval.</summary>
    CropFlip,
}

/// <summary>How images become model input; stored in task files so prediction matches training.</summary>
public sealed record Preprocessing
{
    public int ImageSize { get; init; } = 224;
    public ResizeMode Resize { get; init; } = ResizeMode.Plain;
    public float[] Mean { get; init; } = [0.485f, 0.456f, 0.406f];
    public float[] Std { get; init; } = [0.229f, 0.224f, 0.225f];

    public static readonly float[] ImageNetMean = [0.485f, 0.456f, 0.406f];
    public static readonly float[] ImageNetStd = [0.229f, 0.224f, 0.225f];

    // Value equality over the arrays' contents too (a record compares arrays by reference): two preprocessings that
    // make the same input are equal, which keys such as FeatureMemo's rely on.
    public bool Equals(Preprocessing? other) => other is not null && ImageSize == other.ImageSize && Resize == other.Resize
        && Mean.AsSpan().SequenceEqual(other.Mean) && Std.AsSpan().SequenceEqual(other.Std);

    public override int GetHashCode() => HashCode.Combine(ImageSize, Resize, Mean.Length > 0 ? Mean[0] : 0, Std.Length > 0 ? Std[0] : 0);
}
