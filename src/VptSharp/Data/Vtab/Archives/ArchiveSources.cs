using System.IO.Compression;
using System.Text;
using VptSharp.Data.MiniSuite;
using VptSharp.IO;

namespace VptSharp.Data.Vtab.Archives;

/// <summary>A source built from functions: split sizes known up front, examples produced on demand.</summary>
public sealed class FuncSource(string description, IReadOnlyDictionary<string, int> sizes, Func<string, int, int, IEnumerable<TfExample>> read) : IVtabSource
{
    public string Description => description;
    public IReadOnlyDictionary<string, int> SplitSizes => sizes;
    public IEnumerable<TfExample> Read(string split, int start, int end) => read(split, start, end);
}

/// <summary>
/// The original archives people download, read into the same examples a TFDS-prepared copy holds (an encoded "image"
/// and the TFDS feature names VTAB's label functions read). Split membership and label numbering follow TFDS's builder
/// for that dataset; the ORDER within a split is the archive's own (TFDS shuffles while preparing), so train800 /
/// val200 are VTAB-sized and VTAB-sourced but not the identical images a TFDS copy gives. Use the TFDS path for that.
/// </summary>
public static class ArchiveSources
{
    /// <summary>Which archive layouts each task reads.</summary>
    public static readonly IReadOnlyDictionary<string, string> Layouts = new Dictionary<string, string>
    {
        ["cifar"] = "cifar-100-python/{train,test} (python pickle batches, read without executing pickle code)",
        ["svhn"] = "{train,test}_32x32.mat (MATLAB v5)",
        ["dsprites_loc"] = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
        ["dsprites_ori"] = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
        ["smallnorb_azi"] = "smallnorb-*-{training,testing}-{dat,info}.mat[.gz]",
        ["smallnorb_ele"] = "smallnorb-*-{training,testing}-{dat,info}.mat[.gz]",
        ["dtd"] = "dtd/{images/<class>/*.jpg, labels/{train,val,test}1.txt}",
        ["oxford_iiit_pet"] = "{images/*.jpg, annotations/{trainval,test}.txt}",
        ["oxford_flowers102"] = "{jpg/image_NNNNN.jpg, imagelabels.mat, setid.mat}",
        ["eurosat"] = "<class>/*.jpg (the EuroSAT RGB zip, 10 class folders)",
        ["resisc45"] = "<class>/*.jpg (NWPU-RESISC45, 45 class folders)",
        ["caltech101"] = "101_ObjectCategories/<class>/*.jpg (102 folders incl. BACKGROUND_Google)",
        ["patch_camelyon"] = "camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5[.gz]",
        ["clevr_count"] = "CLEVR_v1.0/{images/{train,val}/*.png, scenes/CLEVR_{train,val}_scenes.json}",
        ["clevr_dist"] = "CLEVR_v1.0/{images/{train,val}/*.png, scenes/CLEVR_{train,val}_scenes.json}",
    };

    public static IVtabSource Open(VtabTask task, string dir)
    {
        if (!Directory.Exists(dir)) throw new InputFileException(dir, "no such folder", "release-folder");
        if (!Layouts.ContainsKey(task.Name))
            throw new ConfigMismatchException($"{task.Name}: no original-archive reader, only its TFDS-prepared copy is read; " +
                $"archive readers exist for {string.Join(", ", Layouts.Keys.Distinct())}", "source", "from");
        try { return OpenReader(task, dir); }
        catch (Exception e) when (e is not VptException && ArchiveChecks.IsMalformed(e)) { throw ArchiveChecks.Malformed(dir, e); }
    }

    static IVtabSource OpenReader(VtabTask task, string dir) =>
        task.Name switch
        {
            "cifar" => Cifar100(dir),
            "svhn" => Svhn(dir),
            "dsprites_loc" or "dsprites_ori" => Dsprites(dir),
            "smallnorb_azi" or "smallnorb_ele" => SmallNorb(dir),
            "dtd" => FolderLayouts.Dtd(dir),
            "oxford_iiit_pet" => FolderLayouts.Pets(dir),
            "oxford_flowers102" => FolderLayouts.Flowers102(dir),
            "eurosat" => FolderLayouts.ClassFolders(dir, "eurosat", 10),
            "resisc45" => FolderLayouts.ClassFolders(dir, "resisc45", 45),
            "caltech101" => FolderLayouts.Caltech101(dir),
            "patch_camelyon" => Camelyon.Open(dir),
            "clevr_count" or "clevr_dist" => FolderLayouts.Clevr(dir),
            _ => throw new System.Diagnostics.UnreachableException(task.Name), // Layouts lists exactly these
        };

    /// <summary>The file under <paramref name="dir"/> (searched recursively, a ".gz" twin accepted) or a one-line error naming what is missing.</summary>
    public static string Find(string dir, string pattern, string what)
    {
        var hits = Directory.EnumerateFiles(dir, pattern, SearchOption.AllDirectories)
            .Concat(Directory.EnumerateFiles(dir, pattern + ".gz", SearchOption.AllDirectories)).Order(StringComparer.Ordinal).ToList();
        return hits.Count > 0 ? hits[0] : throw new InputFileException(dir, $"no {pattern} ({what}) under it", "release-folder");
    }

    public static Stream OpenMaybeGz(string path)
    {
        Stream s = File.OpenRead(path);
        return path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? new GZipStream(s, CompressionMode.Decompress) : s;
    }

    public static byte[] ReadAllMaybeGz(string path)
    {
        using var s = OpenMaybeGz(path);
        return BoundedInflate.ReadAll(s, MaxInflatedBytes, path);
    }

    /// <summary>Largest file these readers hold in memory after inflating (SVHN's train .mat, the largest, is ~180 MB).</summary>
    public const long MaxInflatedBytes = 1L << 30;

    static TfExample Example(byte[] png, params (string Key, long Value)[] ints)
    {
        var ex = new TfExample();
        ex.Bytes["image"] = [png];
        foreach (var (k, v) in ints) ex.Ints[k] = [v];
        return ex;
    }

    /// <summary>CIFAR-100 python batches: dict with 'data' (N × 3072 uint8: 1024 R, 1024 G, 1024 B, row-major 32×32)
    /// and 'fine_labels' (the TFDS "label"). Splits train (50,000) and test (10,000).</summary>
    public static IVtabSource Cifar100(string dir)
    {
        string trainPath = Find(dir, "train", "the CIFAR-100 python train batch"), testPath = Find(dir, "test", "the CIFAR-100 python test batch");
        var batches = new Dictionary<string, (PickledArray Data, List<long> Labels)>();
        foreach (var (split, path) in new[] { ("train", trainPath), ("test", testPath) })
        {
            var root = SafePickle.Load(ReadAllMaybeGz(path), path) as Dictionary<object, object?>
                ?? throw new InvalidDataException($"{path}: not a CIFAR python batch (expected a dict)");
            if (!root.TryGetValue("data", out var data) || !root.TryGetValue("fine_labels", out var labels))
                throw new InvalidDataException($"{path}: not a CIFAR-100 batch (needs 'data' and 'fine_labels'; CIFAR-10 batches have 'labels')");
            var arr = SafePickle.NumpyArray(data, path);
            var lab = ((List<object?>)labels!).Select(x => (long)x!).ToList();
            if (arr.DType != "|u1" || arr.Shape.Length != 2 || arr.Shape[1] != 3072 || arr.Shape[0] != lab.Count)
                throw new InvalidDataException($"{path}: 'data' is {arr.DType} [{string.Join(", ", arr.Shape)}], expected |u1 [{lab.Count}, 3072]");
            batches[split] = (arr, lab);
        }
        return new FuncSource($"CIFAR-100 python batches in {dir}", batches.ToDictionary(kv => kv.Key, kv => kv.Value.Labels.Count),
            (split, start, end) => Rows(batches[split], start, end));

        static IEnumerable<TfExample> Rows((PickledArray Data, List<long> Labels) b, int start, int end)
        {
            for (int i = start; i < end; i++)
            {
                var px = new byte[32 * 32 * 3];
                for (int p = 0; p < 1024; p++)
                    for (int c = 0; c < 3; c++) px[3 * p + c] = b.Data.Data[i * 3072 + c * 1024 + p];
                yield return Example(MiniSuiteWriter.EncodePng(new RgbImage(32, 32, px)), ("label", b.Labels[i]));
            }
        }
    }

    /// <summary>SVHN cropped digits (train_32x32.mat, test_32x32.mat): X uint8 [32, 32, 3, N], y [N, 1] with digit 0
    /// stored as 10 (TFDS svhn_cropped maps it to label 0).</summary>
    public static IVtabSource Svhn(string dir)
    {
        var files = new Dictionary<string, (MatArray X, MatArray Y)>();
        foreach (var (split, pattern) in new[] { ("train", "train_32x32.mat"), ("test", "test_32x32.mat") })
        {
            string path = Find(dir, pattern, "SVHN format 2");
            var vars = MatFile.Read(ReadAllMaybeGz(path), path);
            if (!vars.TryGetValue("X", out var x) || !vars.TryGetValue("y", out var y))
                throw new InvalidDataException($"{path}: needs variables X and y (has {string.Join(", ", vars.Keys)})");
            if (x.Dims.Length != 4 || x.Dims[0] != 32 || x.Dims[1] != 32 || x.Dims[2] != 3 || y.Count != x.Dims[3])
                throw new InvalidDataException($"{path}: X is [{string.Join(", ", x.Dims)}] with {y.Count} labels, expected [32, 32, 3, N] and N labels");
            files[split] = (x, y);
        }
        return new FuncSource($"SVHN .mat files in {dir}", files.ToDictionary(kv => kv.Key, kv => (int)kv.Value.Y.Count), (split, start, end) => Rows(files[split], start, end));

        static IEnumerable<TfExample> Rows((MatArray X, MatArray Y) f, int start, int end)
        {
            var x = f.X.Bytes();
            for (int n = start; n < end; n++)
            {
                var px = new byte[32 * 32 * 3];
                for (int r = 0; r < 32; r++)
                    for (int c = 0; c < 32; c++)
                        for (int ch = 0; ch < 3; ch++) // column-major [row, col, channel, n]
                            px[3 * (r * 32 + c) + ch] = x[r + 32 * c + 1024 * ch + 3072L * n];
                long label = (long)f.Y.Number(n) % 10;
                yield return Example(MiniSuiteWriter.EncodePng(new RgbImage(32, 32, px)), ("label", label));
            }
        }
    }

    /// <summary>dSprites .npz: imgs uint8 [737280, 64, 64] (values 0/1) and latents_classes int64 [N, 6]
    /// (color, shape, scale, orientation, x, y) — the TFDS label_* features. Streamed: the images are 3 GB unpacked.</summary>
    public static IVtabSource Dsprites(string dir)
    {
        string path = Find(dir, "dsprites_ndarray*.npz", "the dSprites npz");
        long[] classes;
        int n;
        using (var zip = OpenZip(path))
        {
            var (header, stream) = NpyStream.Open(Entry(zip, "latents_classes.npy", path), path + ":latents_classes");
            using (stream)
            {
                if (header.Shape.Length != 2 || header.Shape[1] != 6 || header.DType is not ("<i8" or "<i4"))
                    throw new InvalidDataException($"{path}: latents_classes is {header.DType} [{string.Join(", ", header.Shape)}], expected int [N, 6]");
                n = header.Shape[0] <= int.MaxValue / 6 ? (int)header.Shape[0] : throw new InvalidDataException($"{path}: latents_classes declares {header.Shape[0]:N0} rows");
                var entry = zip.GetEntry("latents_classes.npy")!;
                long stored = Math.Min(entry.Length, entry.CompressedLength * MaxDeflateRatio); // both are the zip's own claims
                classes = NpyStream.ReadInts(stream, header, (long)n * 6, stored, path + ":latents_classes");
            }
        }
        return new FuncSource($"dSprites npz {path}", new Dictionary<string, int> { ["train"] = n }, (_, start, end) => Rows(path, classes, start, end));

        static IEnumerable<TfExample> Rows(string path, long[] classes, int start, int end)
        {
            using var zip = OpenZip(path);
            var (header, stream) = NpyStream.Open(Entry(zip, "imgs.npy", path), path + ":imgs");
            using (stream)
            {
                if (header.Shape.Length != 3 || header.Shape[1] != 64 || header.Shape[2] != 64 || header.DType != "|u1")
                    throw new InvalidDataException($"{path}: imgs is {header.DType} [{string.Join(", ", header.Shape)}], expected |u1 [N, 64, 64]");
                NpyStream.Skip(stream, (long)start * 4096, path);
                var gray = new byte[4096];
                for (int i = start; i < end; i++)
                {
                    stream.ReadExactly(gray);
                    var l = classes.AsSpan(6 * i, 6);
                    yield return Example(MiniSuiteWriter.EncodePng(RgbImage.FromGray(64, 64, gray)),
                        ("label_shape", l[1]), ("label_scale", l[2]), ("label_orientation", l[3]), ("label_x_position", l[4]), ("label_y_position", l[5]));
                }
            }
        }
    }

    /// <summary>Deflate's largest expansion (about 1032 : 1): a bound on an entry's real size whatever its header says.</summary>
    const long MaxDeflateRatio = 1032;

    static ZipArchive OpenZip(string path)
    {
        try { return ZipFile.OpenRead(path); }
        catch (InvalidDataException) { throw new InvalidDataException($"{path}: not a zip (.npz) archive; download it again"); }
    }

    static Stream Entry(ZipArchive zip, string name, string path) =>
        (zip.GetEntry(name) ?? throw new InvalidDataException($"{path}: no {name} in the archive (has {string.Join(", ", zip.Entries.Select(e => e.FullName))})")).Open();

    /// <summary>smallNORB binary matrices (-dat: uint8 [N, 2, 96, 96], first camera used; -info: int32 [N, 4]:
    /// instance, elevation 0–8, azimuth 0, 2, …, 34 — halved, as TFDS does — lighting).</summary>
    public static IVtabSource SmallNorb(string dir)
    {
        var splits = new Dictionary<string, (string Dat, int[] Info)>();
        foreach (var (split, word) in new[] { ("train", "training"), ("test", "testing") })
        {
            string dat = Find(dir, $"smallnorb-*-{word}-dat.mat", "smallNORB images"), info = Find(dir, $"smallnorb-*-{word}-info.mat", "smallNORB labels");
            var (dims, ints) = NorbMatrix.ReadInt32(info);
            if (dims.Length != 2 || dims[1] != 4) throw new InvalidDataException($"{info}: expected an int32 [N, 4] matrix, got [{string.Join(", ", dims)}]");
            splits[split] = (dat, ints);
        }
        return new FuncSource($"smallNORB binary matrices in {dir}", splits.ToDictionary(kv => kv.Key, kv => kv.Value.Info.Length / 4), (split, start, end) => Rows(splits[split], start, end));

        static IEnumerable<TfExample> Rows((string Dat, int[] Info) s, int start, int end)
        {
            using var stream = NorbMatrix.OpenBytes(s.Dat, out var dims);
            if (dims.Length != 4 || dims[1] != 2 || dims[2] != 96 || dims[3] != 96 || dims[0] * 4 != s.Info.Length)
                throw new InvalidDataException($"{s.Dat}: expected uint8 [{s.Info.Length / 4}, 2, 96, 96], got [{string.Join(", ", dims)}]");
            NpyStream.Skip(stream, (long)start * 2 * 9216, s.Dat);
            var pair = new byte[2 * 9216];
            for (int i = start; i < end; i++)
            {
                stream.ReadExactly(pair);
                yield return Example(MiniSuiteWriter.EncodePng(RgbImage.FromGray(96, 96, pair.AsSpan(0, 9216))),
                    ("label_elevation", s.Info[4 * i + 1]), ("label_azimuth", s.Info[4 * i + 2] / 2), ("label_lighting", s.Info[4 * i + 3]));
            }
        }
    }
}

/// <summary>The .npy header of a stream (magic, version, a Python dict literal with descr, fortran_order, shape).</summary>
public static class NpyStream
{
    public sealed record Header(string DType, long[] Shape);

    public static (Header Header, Stream Stream) Open(Stream s, string name)
    {
        var magic = new byte[8];
        s.ReadExactly(magic);
        if (magic[0] != 0x93 || Encoding.ASCII.GetString(magic, 1, 5) != "NUMPY") throw new InvalidDataException($"{name}: not a .npy array");
        int headerLen;
        if (magic[6] == 1) { var b = new byte[2]; s.ReadExactly(b); headerLen = BitConverter.ToUInt16(b); }
        else { var b = new byte[4]; s.ReadExactly(b); headerLen = (int)Math.Min(BitConverter.ToUInt32(b), int.MaxValue); }
        if (headerLen > MaxHeaderBytes) throw new InvalidDataException($"{name}: .npy header of {headerLen:N0} bytes; numpy writes a few hundred, the file is corrupt");
        var text = new byte[headerLen];
        s.ReadExactly(text);
        string h = Encoding.ASCII.GetString(text);
        var descr = System.Text.RegularExpressions.Regex.Match(h, @"'descr':\s*'([^']+)'");
        var shape = System.Text.RegularExpressions.Regex.Match(h, @"'shape':\s*\(([^)]*)\)");
        if (!descr.Success || !shape.Success) throw new InvalidDataException($"{name}: unreadable .npy header");
        if (h.Contains("'fortran_order': True")) throw new InvalidDataException($"{name}: Fortran-ordered .npy arrays are not supported");
        var dims = shape.Groups[1].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(x => long.TryParse(x, out long v) && v >= 0 ? v : throw new InvalidDataException($"{name}: .npy shape ({shape.Groups[1].Value}) is not a tuple of sizes")).ToArray();
        return (new Header(descr.Groups[1].Value, dims), s);
    }

    /// <summary>numpy's own header limit (format version 1 needs at most 65,535; newer writers stay under this).</summary>
    const int MaxHeaderBytes = 1 << 16;

    /// <summary><paramref name="count"/> integers, refused (named) when more than <paramref name="available"/> bytes
    /// (the array's stored size) would hold them: a declared shape is checked before it is allocated.</summary>
    public static long[] ReadInts(Stream s, Header h, long count, long available, string name)
    {
        int size = h.DType.EndsWith("8") ? 8 : 4;
        if (count > available / size) throw new InvalidDataException($"{name}: declares {count:N0} values in {available:N0} bytes; the file is truncated, download it again");
        var buf = new byte[count * size];
        s.ReadExactly(buf);
        var result = new long[count];
        for (long i = 0; i < count; i++) result[i] = size == 8 ? BitConverter.ToInt64(buf, (int)(i * 8)) : BitConverter.ToInt32(buf, (int)(i * 4));
        return result;
    }

    public static void Skip(Stream s, long bytes, string name)
    {
        var buf = new byte[1 << 16];
        while (bytes > 0)
        {
            int n = s.Read(buf, 0, (int)Math.Min(buf.Length, bytes));
            if (n == 0) throw new InvalidDataException($"{name}: ends early; the file is truncated, download it again");
            bytes -= n;
        }
    }
}

/// <summary>smallNORB's binary matrix format: int32 magic (0x1E3D4C55 uint8, 0x1E3D4C54 int32), int32 ndim, max(3, ndim)
/// int32 dims, then the data, little-endian.</summary>
public static class NorbMatrix
{
    public static Stream OpenBytes(string path, out int[] dims)
    {
        var s = ArchiveSources.OpenMaybeGz(path);
        dims = Header(s, path, 0x1E3D4C55);
        return s;
    }

    public static (int[] Dims, int[] Data) ReadInt32(string path)
    {
        using var s = ArchiveSources.OpenMaybeGz(path);
        var dims = Header(s, path, 0x1E3D4C54);
        long count = dims.Aggregate(1L, (a, b) => a * b);
        bool gz = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase);
        if (!gz && count * 4 > new FileInfo(path).Length) throw new InvalidDataException($"{path}: declares {count:N0} values in a {new FileInfo(path).Length:N0}-byte file; download it again");
        if (count > MaxInt32Values) throw new InvalidDataException($"{path}: a smallNORB label matrix of {count:N0} values; the release's hold 97,200, the file is corrupt");
        var buf = new byte[count * 4];
        try { s.ReadExactly(buf); } catch (EndOfStreamException) { throw new InvalidDataException($"{path}: truncated smallNORB matrix; download it again"); }
        var data = new int[count];
        Buffer.BlockCopy(buf, 0, data, 0, buf.Length);
        return (dims, data);
    }

    static int[] Header(Stream s, string path, int expectedMagic)
    {
        var b = new byte[8];
        try { s.ReadExactly(b); } catch (EndOfStreamException) { throw new InvalidDataException($"{path}: too short for a smallNORB matrix"); }
        int magic = BitConverter.ToInt32(b, 0), ndim = BitConverter.ToInt32(b, 4);
        if (magic != expectedMagic || ndim is < 1 or > 8)
            throw new InvalidDataException($"{path}: not a smallNORB {(expectedMagic == 0x1E3D4C55 ? "uint8" : "int32")} matrix (magic 0x{magic:X8}); download it again");
        var d = new byte[4 * Math.Max(3, ndim)];
        s.ReadExactly(d);
        var dims = Enumerable.Range(0, ndim).Select(i => BitConverter.ToInt32(d, 4 * i)).ToArray();
        if (dims.Any(x => x < 0)) throw new InvalidDataException($"{path}: smallNORB matrix with negative dimensions [{string.Join(", ", dims)}]; download it again");
        return dims;
    }

    /// <summary>Label matrices above this are refused before allocation (the release's are 24,300 × 4).</summary>
    const long MaxInt32Values = 1L << 26;
}
