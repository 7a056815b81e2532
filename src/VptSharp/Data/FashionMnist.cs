using System.Buffers.Binary;
using System.IO.Compression;
using VptSharp.IO;

namespace VptSharp.Data;

/// <summary>Fashion-MNIST from its (gzipped, big-endian) IDX files, e.g. Debian's dataset-fashion-mnist.</summary>
public sealed class FashionMnist : ImageDataset
{
    public const string DefaultDir = "/usr/share/datasets/fashion-mnist";
    public static readonly string[] ClassNames =
        ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"];

    readonly byte[] images; // N·28·28
    readonly byte[] labels;
    readonly string split;

    public FashionMnist(string split = "train", string? dir = null)
    {
        dir ??= Environment.GetEnvironmentVariable("VPTSHARP_FASHION_MNIST") ?? DefaultDir;
        string prefix = split switch
        {
            "train" => "train", "test" or "t10k" => "t10k",
            _ => throw new ArgumentException($"Fashion-MNIST split '{split}' unknown; use train or test"),
        };
        this.split = split;
        string img = Path.Combine(dir, $"{prefix}-images-idx3-ubyte.gz"), lab = Path.Combine(dir, $"{prefix}-labels-idx1-ubyte.gz");
        if (!File.Exists(img) || !File.Exists(lab))
            throw new FileNotFoundException($"{img}: Fashion-MNIST not found; install it with 'apt-get install dataset-fashion-mnist' or set VPTSHARP_FASHION_MNIST");
        images = ReadIdx(img, 2051, out var dims);
        if (dims.Length != 3 || dims[1] != 28 || dims[2] != 28) throw new InvalidDataException($"{img}: expected N×28×28 images");
        labels = ReadIdx(lab, 2049, out _);
        if (labels.Length * 784 != images.Length) throw new InvalidDataException($"{lab}: label count does not match {img}");
    }

    /// <summary>Largest inflated IDX file accepted: the train images are 47 MB.</summary>
    const long MaxIdxBytes = 256L << 20;

    static byte[] ReadIdx(string path, int magic, out int[] dims)
    {
        using var gz = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
        var all = BoundedInflate.ReadAll(gz, MaxIdxBytes, path).AsSpan();
        if (all.Length < 4 + 4 * (magic & 0xff)) throw new InvalidDataException($"{path}: not an IDX file (too short)");
        if (BinaryPrimitives.ReadInt32BigEndian(all) != magic) throw new InvalidDataException($"{path}: not an IDX file (magic {magic} expected)");
        int nd = magic & 0xff;
        dims = new int[nd];
        for (int i = 0; i < nd; i++) dims[i] = BinaryPrimitives.ReadInt32BigEndian(all[(4 + 4 * i)..]);
        return all[(4 + 4 * nd)..].ToArray();
    }

    public override int Count => labels.Length;
    public override IReadOnlyList<string> Classes => ClassNames;
    public override int LabelOf(int index) => labels[index];
    public override string NameOf(int index) => $"fashion-mnist:{split}#{index}";
    public override RgbImage Load(int index) => RgbImage.FromGray(28, 28, images.AsSpan(index * 784, 784));
}
